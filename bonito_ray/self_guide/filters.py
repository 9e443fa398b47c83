"""The filters of SELF-GUIDE, as pure functions: each returns the reason it
drops a text for, or None to keep it. Steps apply them in order and count what they drop by reason.

- ``empty``: nothing was written.
- ``length``: characters outside mean +/- ``k`` standard deviations of the demonstrations' lengths
  (the paper: k = 2; on for classification inputs and generation outputs).
- ``noise``: text a chat model writes around an answer ("Sure, I'd be happy to help!") or the
  template's own words (``input``, ``output``): signs that the model answered the prompt instead of
  writing the field.
- ``duplicate``: an input equal to one kept before it.
- ``near_demonstration`` / ``near_duplicate_input``: an input whose words are mostly a demonstration's
  input's, or an input's kept before it (``NearCopies``; on for inputs, off with ``near_duplicate_filter``).
  A small student copies its demonstrations with a word changed ("..., thanks." for "..., thank you!");
  the exact ``duplicate`` filter keeps such copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import fmean, pstdev

from bonito_ray.rejects import (DUPLICATE, EMPTY_TEXT, NEAR_DEMONSTRATION, NEAR_DUPLICATE_INPUT, NOISE, TOO_LONG,
                                TOO_SHORT)

# Chatty assistant phrases and template words (the paper's noise filter); matched case-insensitively,
# template words as whole words.
NOISE_PHRASES = ("sure,", "sure!", "i'd be happy to", "i would be happy to", "happy to help", "as an ai",
                 "here is a new", "here's a new", "here is an", "here's an", "i hope this helps", "certainly!",
                 "let me know if")
_TEMPLATE_WORD = re.compile(r"(?<![\w\[])(?:\[?(?:input|output)\]?)(?![\w\]])", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_SHOWN = 60  # characters of the near text a reject's detail quotes

EMPTY = EMPTY_TEXT  # the reasons are bonito_ray.rejects'; this module names them as its filters do


@dataclass(frozen=True)
class LengthBounds:
    """Allowed lengths in characters, inclusive."""

    low: float
    high: float

    @classmethod
    def around(cls, texts: list[str], k: float) -> "LengthBounds":
        """mean +/- ``k`` population standard deviations of the lengths of ``texts``."""
        lengths = [len(t) for t in texts]
        mean, spread = fmean(lengths), pstdev(lengths)
        return cls(mean - k * spread, mean + k * spread)


def empty(text: str) -> str | None:
    return EMPTY if not text.strip() else None


def length(text: str, bounds: LengthBounds) -> str | None:
    if len(text) < bounds.low:
        return TOO_SHORT
    if len(text) > bounds.high:
        return TOO_LONG
    return None


def noise(text: str) -> str | None:
    lowered = text.lower()
    if any(phrase in lowered for phrase in NOISE_PHRASES) or _TEMPLATE_WORD.search(text):
        return NOISE
    return None


def duplicate(text: str, seen: set[str]) -> str | None:
    return DUPLICATE if text in seen else None


def words(text: str) -> frozenset[str]:
    """The set of ``text``'s words: runs of letters and digits, case folded (punctuation and order aside)."""
    return frozenset(_WORD.findall(text.casefold()))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two word sets: the share of their words the two texts have in common, 0..1. A
    text with no word resembles nothing."""
    return len(a & b) / len(a | b) if a and b else 0.0


@dataclass
class NearCopies:
    """What an input must not be too close to: the demonstrations' inputs, and the inputs kept before it.

    Two texts are too close when the Jaccard similarity of their word sets (``words``) is at least
    ``threshold``. The default, 0.5, was set on demonstration-like pairs (tests/test_self_guide_near_dup.py):
    a demonstration with one or two words changed, dropped or added scored 0.62-0.90; a new input on the same
    topic, even one reusing several of its words ("Your support agent was rude and my billing problem is still
    not solved." for "Your support agent solved my billing problem in five minutes, thank you!"), 0.09-0.39.
    Each input is compared with every demonstration and every input kept before it: n^2 / 2 set operations for
    n inputs, 0.1 s of CPU for the paper's 400 one-sentence inputs (docs/self_guide.md, "Near copies").
    """

    threshold: float
    demonstrations: list[frozenset[str]]
    kept: list[tuple[str, frozenset[str]]] = field(default_factory=list)

    @classmethod
    def of(cls, demonstrations: Iterable[str], threshold: float, kept: Iterable[str] = ()) -> "NearCopies":
        near = cls(threshold, [words(d) for d in demonstrations])
        for text in kept:
            near.add(text)
        return near

    def add(self, text: str) -> None:
        """``text`` was kept: later inputs must not be too close to it."""
        self.kept.append((text, words(text)))

    def drop(self, text: str) -> tuple[str, str] | None:
        """(reason, detail) when ``text`` is too close to a demonstration (looked at first) or to a kept input,
        the detail naming the closest one; None to keep it."""
        own, rule = words(text), f"near_duplicate_threshold {self.threshold:g}"
        score, index = _closest(own, self.demonstrations)
        if score >= self.threshold:
            return NEAR_DEMONSTRATION, f"word similarity {score:.2f} to demonstration {index + 1} ({rule})"
        score, index = _closest(own, [w for _, w in self.kept])
        if score >= self.threshold:
            return NEAR_DUPLICATE_INPUT, (f"word similarity {score:.2f} to an input kept before it, "
                                          f"{_shorten(self.kept[index][0])!r} ({rule})")
        return None


def _closest(own: frozenset[str], others: list[frozenset[str]]) -> tuple[float, int]:
    """(the highest similarity of ``own`` to ``others``, the index of the first that has it); (0.0, -1) for none."""
    scores = [similarity(own, w) for w in others]
    best = max(range(len(scores)), key=scores.__getitem__, default=-1)
    return (scores[best], best) if scores else (0.0, -1)


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def first_drop(text: str, *, bounds: LengthBounds | None, use_noise: bool,
               seen: set[str] | None = None, near: NearCopies | None = None) -> tuple[str | None, str]:
    """The first filter that drops ``text``, in the paper's order (empty, length, noise, duplicate), then the near
    copies' (``near``: a demonstration's, then a kept input's), and a detail for the reject row; (None, "") when
    every filter keeps it."""
    if empty(text):
        return EMPTY, ""
    if bounds is not None and (reason := length(text, bounds)):
        return reason, f"{len(text)} characters; allowed {max(0, bounds.low):.0f}..{bounds.high:.0f}"
    if use_noise and noise(text):
        return NOISE, "a chat phrase or a template word (input, output) in the text"
    if seen is not None and duplicate(text, seen):
        return DUPLICATE, "the same text as an input kept before it"
    if near is not None and (dropped := near.drop(text)):
        return dropped
    return None, ""
