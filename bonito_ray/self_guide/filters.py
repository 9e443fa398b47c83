"""The filters of SELF-GUIDE, as pure functions: each returns the reason it
drops a text for, or None to keep it. Steps apply them in order and count what they drop by reason.

- ``empty``: nothing was written.
- ``length``: characters outside mean +/- ``k`` standard deviations of the demonstrations' lengths
  (the paper: k = 2; on for classification inputs and generation outputs).
- ``noise``: text a chat model writes around an answer ("Sure, I'd be happy to help!") or the
  template's own words (``input``, ``output``): signs that the model answered the prompt instead of
  writing the field.
- ``duplicate``: an input equal to one kept before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import fmean, pstdev

from bonito_ray.rejects import DUPLICATE, EMPTY_TEXT, NOISE, TOO_LONG, TOO_SHORT

# Chatty assistant phrases and template words (the paper's noise filter); matched case-insensitively,
# template words as whole words.
NOISE_PHRASES = ("sure,", "sure!", "i'd be happy to", "i would be happy to", "happy to help", "as an ai",
                 "here is a new", "here's a new", "here is an", "here's an", "i hope this helps", "certainly!",
                 "let me know if")
TEMPLATE_WORDS = ("input", "output", "[input]", "[output]")
_TEMPLATE_WORD = re.compile(r"(?<![\w\[])(?:\[?(?:input|output)\]?)(?![\w\]])", re.IGNORECASE)

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


def first_drop(text: str, *, bounds: LengthBounds | None, use_noise: bool,
               seen: set[str] | None = None) -> tuple[str | None, str]:
    """The first filter that drops ``text``, in the paper's order (empty, length, noise, duplicate), and a
    detail for the reject row; (None, "") when every filter keeps it."""
    if empty(text):
        return EMPTY, ""
    if bounds is not None and (reason := length(text, bounds)):
        return reason, f"{len(text)} characters; allowed {max(0, bounds.low):.0f}..{bounds.high:.0f}"
    if use_noise and noise(text):
        return NOISE, "a chat phrase or a template word (input, output) in the text"
    if seen is not None and duplicate(text, seen):
        return DUPLICATE, "the same text as an input kept before it"
    return None, ""
