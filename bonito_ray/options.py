"""The answer options a task's input offers, read from P3-style templates (pure functions).

Bonito's task types come from P3, whose classification templates offer their labels in a few
shapes; each is one family here, and ``offered_options`` returns the union of what they find:

- **choice sentence**: a sentence that is only a list: ``True, False, or Neither?``,
  ``Yes or no?``, ``Yes, no, or maybe?``, ``Answer entailment, neutral or contradiction.``, ``(yes/no)``;
- **quoted items**: ``answer with "Yes" or "No"``, ``Please answer 'yes' or 'no'``;
- **question tail**: a question ending in a list of three or more single words
  (``... is definitely correct, incorrect, or inconclusive?``, ``always, sometimes, or never true?``),
  or in two label words (``Is this review positive or negative?``; ``... rent or not?`` is no list);
- **options block**: a header (``OPTIONS:``, ``Choices:``, ``Answer choices:``, ``Choose from:`` ...)
  followed by ``- item`` lines or a comma list, or ``- item`` lines ending the input;
- **lettered**: ``(A) x (B) y``, ``A. x`` / ``B) y`` lines, ``Option 1: x Option 2: y``; the answer may
  be the item, its letter (``B``, ``(B)``) or both (``B. 30 days``).

The passage must be cut out of the input first (its own "(a)" clauses and lists are no options).
An answer is admitted when, normalised (case, surrounding quotes, spaces and end punctuation),
it is one of the items (``Written work`` of ``film or written work``) or the letter of a
lettered item (``B``, ``(B)``, ``B. 30 days``); ``Impossible`` is not ``It's impossible to say``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words that make "X or Y?" at the end of a question a list of labels rather than a question.
LABEL_WORDS = frozenset({
    "yes", "no", "maybe", "true", "false", "neither", "correct", "incorrect", "inconclusive", "always",
    "sometimes", "never", "positive", "negative", "neutral", "good", "bad", "entailment", "contradiction",
    "right", "wrong", "same", "different", "possible", "impossible", "agree", "disagree", "similar",
    "equivalent", "related", "unrelated", "likely", "unlikely", "yes/no",
})
_QUOTE = "\"'“”‘’`"
_ITEM = r"[\"'“‘`]?[\w$%][\w'$%.\-]*(?: [\w'$%.\-]+){0,3}[\"'”’`]?"
_SEP = r"\s*(?:,\s*or|,|/|\bor\b)\s*"
_LEAD = r"(?:(?:please\s+)?(?:answer|reply|respond|choose|pick|select)\b(?:\s+(?:with|by|from))?(?:\s+(?:either|one of))?:?\s*)?"
_CHOICE_SENTENCE = re.compile(rf"^\(?{_LEAD}({_ITEM}(?:{_SEP}{_ITEM})+)\)?\s*[?.!]?$", re.IGNORECASE)
_QUOTED = re.compile(r"([\"“‘'`])([^\"“”‘’'`\n]{1,40})[\"”’'`](?=\s*(?:,\s*or|,|\bor\b|\band\b)\s*[\"“‘'`])"
                     r"|(?<=or )([\"“‘'`])([^\"“”‘’'`\n]{1,40})[\"”’'`]"
                     r"|(?<=, )([\"“‘'`])([^\"“”‘’'`\n]{1,40})[\"”’'`]", re.IGNORECASE)
_TAIL3 = re.compile(r"\b(\w+),\s+((?:\w+,\s+)*\w+),?\s+or\s+(\w+)(?:\s+\w+)?\s*\?\s*$", re.IGNORECASE)
_TAIL2 = re.compile(r"\b([\w/]+)\s+or\s+([\w/]+)\s*\?\s*$", re.IGNORECASE)
_HEADER = re.compile(r"^\s*(?:options|choices|answer choices|possible answers|candidate answers|choose from|"
                     r"pick one|select one|choose one|(?:the )?(?:options|choices|categories) are)\s*[:\-]?\s*(.*)$",
                     re.IGNORECASE)
_INLINE = re.compile(r"\b(?:(?:the|your) )?(?:options|choices|categories|labels)(?: are)?\s*(?::|-|are)\s*"
                     r"(.+?)(?:[?.](?:\s|$)|\n|$)", re.IGNORECASE)
# A listed "item" starting with one of these is the question itself ("Is that correct, ..."), not an option.
_QUESTION_WORDS = frozenset("is are am was were do does did can could will would should shall may might must has have "
                            "had which what who whom whose where when why how".split())
_BULLET = re.compile(r"^\s*[-*•]\s+(.+?)\s*$")
_LETTER = re.compile(r"(?:^|(?<=\s))(?:\(([A-Ha-h1-8])\)|([A-Ha-h1-8])[.)]|option\s*([1-8]):)\s+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[?.!:])\s+|\n+")


@dataclass(frozen=True)
class Options:
    """What an input offers: its items, the letters of lettered items, and the option text itself."""

    items: tuple[str, ...]
    letters: tuple[str, ...] = ()
    text: str = ""

    def admits(self, answer: str) -> bool:
        """Whether ``answer`` is one of the options (see the module docstring)."""
        a = normalise(answer)
        if not a:
            return False
        letter = re.sub(r"^option\s*", "", a).strip("() ")
        if a in self.items or letter in self.letters:
            return True
        lettered = re.match(r"^\(?([a-h1-8])[.):]\s*(.+)$", a)
        return bool(lettered) and lettered.group(1) in self.letters


def normalise(text: str) -> str:
    """Casefolded, inner spaces collapsed, surrounding quotes, spaces and end punctuation dropped."""
    text = " ".join(text.casefold().split())
    return text.strip(_QUOTE + " ").rstrip(".!?;:,").strip(_QUOTE + " ")


def offered_options(question: str) -> Options | None:
    """The options ``question`` (a task input with the passage cut out) offers; None when it offers none."""
    found = [o for o in (_choice_sentences(question), _quoted(question), _question_tail(question),
                         _option_block(question), _lettered(question)) if o is not None]
    if not found:
        return None
    items = tuple(dict.fromkeys(i for o in found for i in o.items if i))
    letters = tuple(dict.fromkeys(letter for o in found for letter in o.letters))
    return Options(items, letters, " | ".join(o.text for o in found))


def _split(listing: str) -> tuple[str, ...]:
    parts = re.split(_SEP, listing.strip(), flags=re.IGNORECASE)
    return tuple(normalise(p) for p in parts if normalise(p))


def _choice_sentences(question: str) -> Options | None:
    items: list[str] = []
    texts: list[str] = []
    for sentence in _SENTENCE_END.split(question):
        match = _CHOICE_SENTENCE.match(sentence.strip())
        listed = _split(match.group(1)) if match else ()
        if listed and listed[0].split()[0] in _QUESTION_WORDS:
            continue  # "Is that correct, incorrect, or inconclusive?": a question; its tail lists the options
        # "Is rent due or not?" is a question, not a list: two items need a lead or a label word
        led = bool(match) and bool(match.string[: match.start(1)].strip("( "))  # "Answer ..." before the list
        if len(listed) >= 3 or (len(listed) == 2 and (led or set(listed) & LABEL_WORDS)):
            items += listed
            texts.append(match.group(1))
    return Options(tuple(items), text=" | ".join(texts)) if items else None


def _quoted(question: str) -> Options | None:
    items = [normalise(m.group(2) or m.group(4) or m.group(6) or "") for m in _QUOTED.finditer(question)]
    items = [i for i in items if i]
    return Options(tuple(items), text=" | ".join(items)) if len(items) >= 2 else None


def _question_tail(question: str) -> Options | None:
    last = _SENTENCE_END.split(question.strip())[-1] if question.strip() else ""
    match = _TAIL3.search(last)
    if match:
        items = (match.group(1), *re.split(r",\s+", match.group(2)), match.group(3))
        return Options(tuple(normalise(i) for i in items), text=match.group(0))
    match = _TAIL2.search(last)
    if match and {normalise(match.group(1)), normalise(match.group(2))} <= LABEL_WORDS:
        return Options((normalise(match.group(1)), normalise(match.group(2))), text=match.group(0))
    return None


def _option_block(question: str) -> Options | None:
    lines = question.splitlines()
    for at, line in enumerate(lines):
        header = _HEADER.match(line)
        if not header:
            continue
        if header.group(1).strip():  # the list on the header's own line
            listing = re.split(r"[?.](?:\s|$)", header.group(1).lstrip("- "))[0]
            items = _split(listing)
            if len(items) >= 2:
                return Options(items, text=listing)
        bullets = _bullets(lines[at + 1 :])
        if len(bullets) >= 2:
            return Options(tuple(normalise(b) for b in bullets), text=" | ".join(bullets))
    inline = _INLINE.search(question)
    if inline and len(_split(inline.group(1))) >= 2:
        return Options(_split(inline.group(1)), text=inline.group(1))
    trailing = _bullets(list(reversed([l for l in lines if l.strip()])))  # "- item" lines ending the input
    if len(trailing) >= 2:
        return Options(tuple(normalise(b) for b in reversed(trailing)), text=" | ".join(reversed(trailing)))
    return None


def _bullets(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        if not line.strip():
            if found:
                break
            continue
        bullet = _BULLET.match(line)
        if not bullet:
            break
        found.append(bullet.group(1))
    return found


def _lettered(question: str) -> Options | None:
    markers = list(_LETTER.finditer(question))
    labels = [(m.group(1) or m.group(2) or m.group(3)).lower() for m in markers]
    for first in ("a", "1"):
        if first not in labels:
            continue
        start = labels.index(first)
        run = [start]
        for k in range(start + 1, len(labels)):
            if labels[k] == chr(ord(labels[run[-1]]) + 1):
                run.append(k)
        if len(run) < 2:
            continue
        items = []
        for n, k in enumerate(run):
            end = markers[run[n + 1]].start() if n + 1 < len(run) else len(question)
            items.append(normalise(question[markers[k].end() : end].split("\n")[0]))
        letters = tuple(labels[k] for k in run)
        return Options(tuple(items), letters, " | ".join(items))
    return None
