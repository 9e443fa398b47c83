"""Passage preparation: Unicode/whitespace normalisation, token-aware chunking, length filters.

Documents of any length become passages that fit the generator: chunks of at most
``passage_tokens`` tokens of the generator's own tokenizer, cut preferably at a paragraph break,
else a sentence end, else a line break or a space; a short last chunk is merged into the one before
it (counted under ``_rejects/stage=chunk``, reason ``merged_tail``). Long documents are tokenised a window at a
time, so a 50 MB document needs memory for one window, not for the whole document's tokens.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from bonito_ray.generators import DEFAULT_GENERATOR, GENERATORS
from bonito_ray.rejects import (CONTROL_MARKER, MERGED_TAIL, NO_VISIBLE_TEXT, SPECIAL_TOKEN, TOO_LONG, TOO_SHORT,
                                write_rejects)
from bonito_ray.schema import CHUNK_STAGE, CLEAN_STAGE, PASSAGE_SCHEMA, stable_id

# A passage holding one of the generator's special-token strings (</s>, <s>, <pad>, ...) would be
# encoded as that special id by the engine (vLLM tokenises on its own), so an EOS could end the
# prompt mid-passage: rejected with the token named, for every engine alike.

_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s")
_CHARS_PER_TOKEN_GUESS = 4.0  # first guess; then measured on each window
# A last chunk under this many tokens (or a quarter of the chunk size, if less) is merged into the
# chunk before it: a closing sentence ("This lease is governed by the laws of ...") alone makes junk tasks.
MIN_TAIL_TOKENS = 64


def normalize(text: str) -> str:
    """NFC, Unix line ends, runs of spaces collapsed, lines trimmed, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


@functools.lru_cache(maxsize=4)
def cached_tokenizer(source: str) -> Any:
    """The tokenizer of a model directory or hub id, loaded once per worker process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


@functools.lru_cache(maxsize=4)
def special_tokens(source: str) -> tuple[str, ...]:
    """Every string the tokenizer of ``source`` encodes as a special id (declared or added as special).

    None for a model whose tokenizer cannot be loaded: only the model-free echo engine runs with
    one (planning loads every other engine's tokenizer), and it encodes nothing.
    """
    try:
        tokenizer = cached_tokenizer(source)
    except OSError:
        return ()
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    tokens = set(tokenizer.all_special_tokens) | {t.content for t in added if getattr(t, "special", False)}
    return tuple(sorted(t for t in tokens if t))


def has_visible_text(text: str) -> bool:
    """Whether ``text`` holds a character other than whitespace and control/format (Unicode C*) ones."""
    return any(not ch.isspace() and unicodedata.category(ch)[0] != "C" for ch in text)


def chunk(text: str, get_tokenizer: Callable[[], Any], passage_tokens: int, overlap: int = 0) -> Iterator[str]:
    """Split ``text`` into chunks of at most ``passage_tokens`` tokens, preferring natural breaks.

    A short tail is merged into the chunk before it (see ``chunk_document``).
    """
    yield from chunk_document(text, get_tokenizer, passage_tokens, overlap)[0]


def min_tail_tokens(passage_tokens: int) -> int:
    """The fewest tokens a last chunk may hold: less is too little context for a task of its own."""
    return min(MIN_TAIL_TOKENS, passage_tokens // 4)


def chunk_document(text: str, get_tokenizer: Callable[[], Any], passage_tokens: int,
                   overlap: int = 0) -> tuple[list[str], int]:
    """(chunks, tail tokens merged): ``text`` in chunks of at most ``passage_tokens`` tokens.

    Chunks are cut preferably at natural breaks. A last chunk of fewer than ``min_tail_tokens``
    tokens (a closing sentence after a long clause) is not kept alone: it joins the chunk before
    it when both fit in ``passage_tokens``, else the two are cut again near their middle. The second
    value is the merged tail's token count (0 when nothing was merged). ``get_tokenizer`` is called
    only when ``text`` may be too long, so short passages never load one.
    """
    if len(text.encode("utf-8")) + 1 < passage_tokens:  # every token covers at least one byte
        return [text], 0
    tokenizer = get_tokenizer()
    pieces = list(_chunks(text, tokenizer, passage_tokens, overlap))
    if len(pieces) < 2:
        return [piece for _, piece in pieces], 0
    (last_start, _), (tail_start, tail) = pieces[-2:]
    tail_tokens = _count(tokenizer, tail)
    if tail_tokens >= min_tail_tokens(passage_tokens):
        return [piece for _, piece in pieces], 0
    merged = _merge_tail(text[last_start:], tokenizer, passage_tokens, overlap)
    if merged is None:
        return [piece for _, piece in pieces], 0
    return [piece for _, piece in pieces[:-2]] + merged, tail_tokens


def _merge_tail(region: str, tokenizer: Any, passage_tokens: int, overlap: int) -> list[str] | None:
    """The last chunk and a short tail (``region``) as one chunk, or cut again near the middle; None if
    neither fits (the caller keeps them as they were)."""
    offsets = tokenizer(region, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= passage_tokens:
        return [region.strip()]
    # Cut no later than min_tail tokens before the end; _best_break cuts in the second half before it.
    cut = _best_break(region, offsets[len(offsets) - min_tail_tokens(passage_tokens)][0])
    second = cut
    if overlap:
        starts = [s for s, _ in offsets if s < cut]
        second = starts[max(0, len(starts) - overlap)]
    halves = [region[:cut].strip(), region[second:].strip()]
    if not all(halves) or any(_count(tokenizer, h) > passage_tokens for h in halves):
        return None
    return halves


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _chunks(text: str, tokenizer: Any, passage_tokens: int, overlap: int) -> Iterator[tuple[int, str]]:
    """(start offset in ``text``, chunk) for each chunk of at most ``passage_tokens`` tokens."""
    start = 0
    chars_per_token = _CHARS_PER_TOKEN_GUESS
    while start < len(text):
        segment, offsets = _tokenized_window(text, start, tokenizer, passage_tokens, chars_per_token)
        if len(offsets) <= passage_tokens:  # the rest of the text fits
            if segment.strip():
                yield start, segment.strip()
            return
        chars_per_token = offsets[passage_tokens][0] / passage_tokens  # size the next window on what this one held
        cut = _best_break(segment, offsets[passage_tokens][0])
        piece = segment[:cut].strip()
        if piece:
            yield start, piece
        advance = cut
        if overlap:
            starts = [s for s, _ in offsets if s < cut]
            if len(starts) > overlap:
                advance = max(1, starts[len(starts) - overlap])
        start += advance


def _tokenized_window(text: str, start: int, tokenizer: Any, passage_tokens: int,
                      chars_per_token: float) -> tuple[str, list]:
    """The shortest window of ``text`` from ``start`` holding more than ``passage_tokens`` tokens (or the rest)."""
    size = int(passage_tokens * chars_per_token * 1.1) + 16
    while True:
        segment = text[start : start + size]
        offsets = tokenizer(segment, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) > passage_tokens or start + size >= len(text):
            return segment, offsets
        size *= 2


def _best_break(segment: str, limit: int) -> int:
    """The cut position in ``segment[:limit]``: after a paragraph, sentence, line or word, in that order."""
    floor = limit // 2  # never cut so early that chunks become tiny
    region = segment[floor:limit]
    paragraph = region.rfind("\n\n")
    if paragraph >= 0:
        return floor + paragraph + 2
    sentences = list(_SENTENCE_END.finditer(region))
    if sentences:
        return floor + sentences[-1].end()
    for sep in ("\n", " "):
        at = region.rfind(sep)
        if at >= 0:
            return floor + at + 1
    return limit


# Bonito was trained on inputs of at most this many tokens; an instruct generator gets passages no longer
# either: a task's input holds its passage, and longer ones make unwieldy training examples.
MAX_PASSAGE_TOKENS = 2048


def passage_token_budget(tokenizer: Any, window: int | None, max_tokens: int,
                         sizing_prompts: list[str] | None = None) -> int:
    """The largest passage (in tokens) whose prompt plus ``max_tokens`` fits the model's window.

    ``sizing_prompts``: the generator's prompts around a one-character passage (``Generator.sizing_prompts``;
    default: Bonito's), the longest of which is what a prompt adds to its passage.
    """
    if sizing_prompts is None:
        sizing_prompts = GENERATORS[DEFAULT_GENERATOR].sizing_prompts(tokenizer)
    # +8: tokens merging at the seams
    overhead = max(len(tokenizer(prompt)["input_ids"]) for prompt in sizing_prompts) + 8
    budget = MAX_PASSAGE_TOKENS if window is None else min(MAX_PASSAGE_TOKENS, window - max_tokens - overhead)
    if budget < 16:
        raise ValueError(f"the model's window of {window} tokens leaves no room for a passage next to "
                         f"max_tokens={max_tokens}; lower --max-tokens or raise the window")
    return budget


def prepare_passages(documents: pa.Table, *, tokenizer_source: str, passage_tokens: int, overlap: int,
                     min_chars: int, max_chars: int | None, markers: tuple[str, ...], output_uri: str,
                     s3_endpoint: str | None) -> pa.Table:
    """Documents -> normalised, chunked passages; passages that cannot make a task are rejected (``markers``:
    the generator's, see ``passage_problem``)."""
    get_tokenizer = functools.partial(cached_tokenizer, tokenizer_source)
    specials = special_tokens(tokenizer_source)
    passages, dropped, merged = [], [], []
    for doc in documents.to_pylist():
        pieces, tail_tokens = chunk_document(normalize(doc["context"]), get_tokenizer, passage_tokens, overlap)
        for index, text in enumerate(pieces):
            row = {"passage_id": stable_id(doc["source"], doc["position"], index), "source": doc["source"],
                   "position": doc["position"], "chunk": index, "context": text}
            problem = passage_problem(text, markers, specials, min_chars, max_chars)
            if problem:
                dropped.append(row | dict(zip(("reason", "detail"), problem)))
            else:
                passages.append(row)
        if tail_tokens:
            merged.append({"source": doc["source"], "position": doc["position"], "chunk": len(pieces) - 1,
                           "reason": MERGED_TAIL, "detail": f"a last chunk of {tail_tokens} tokens merged into "
                                                            f"chunk {len(pieces) - 1}: not prompted alone"})
    write_rejects(output_uri, CLEAN_STAGE, dropped, s3_endpoint)
    write_rejects(output_uri, CHUNK_STAGE, merged, s3_endpoint)
    return pa.Table.from_pylist(passages, PASSAGE_SCHEMA)


def passage_problem(text: str, markers: tuple[str, ...], specials: tuple[str, ...], min_chars: int,
                    max_chars: int | None) -> tuple[str, str] | None:
    """(reason, detail) when ``text`` cannot make a task, else None; the first problem found wins.

    ``markers``: the generator's (``Generator.markers``): a passage holding one could forge or break a
    prompt or its answer, so it is rejected with the marker named, never silently rewritten."""
    held = [m for m in markers if m in text]
    if held:
        return CONTROL_MARKER, "contains " + " ".join(held)
    found = [t for t in specials if t in text]
    if found:
        return SPECIAL_TOKEN, "contains the tokenizer's special token(s) " + " ".join(found)
    if not has_visible_text(text):
        return NO_VISIBLE_TEXT, "only whitespace and control characters"
    if len(text) < min_chars:
        return TOO_SHORT, f"{len(text)} chars < {min_chars}"
    if max_chars is not None and len(text) > max_chars:
        return TOO_LONG, f"{len(text)} chars > {max_chars}"
    return None
