"""Passage preparation: normalisation and token-aware chunking (no Ray needed)."""

import pytest

from bonito_ray.passages import _best_break, _chunks, chunk, chunk_document, min_tail_tokens, normalize, passage_token_budget
from tests.tiny_models import build_tokenizer, sample_passages


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(sample_passages(200))


def n_tokens(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_normalize():
    assert normalize("  Cafe\u0301\r\n\r\n\r\n\tline  two \u00a0 end  \n") == "Caf\u00e9\n\nline two end"


def test_short_text_is_one_chunk_untouched(tokenizer):
    assert list(chunk("Rent is due.", lambda: tokenizer, 64)) == ["Rent is due."]


def long_document(paragraphs=30):
    return "\n\n".join(" ".join(sample_passages(40)[i % 40 : i % 40 + 4]) for i in range(paragraphs))


def test_chunks_fit_the_budget_cut_at_breaks_and_lose_nothing(tokenizer):
    text = long_document()
    pieces = list(chunk(text, lambda: tokenizer, 120))
    assert len(pieces) > 5
    assert all(n_tokens(tokenizer, p) <= 120 for p in pieces)
    assert all(p.endswith(".") for p in pieces)  # every cut fell after a sentence or paragraph
    assert " ".join(" ".join(p.split()) for p in pieces) == " ".join(text.split())


def test_text_without_breaks_is_still_cut_within_budget(tokenizer):
    text = "x" * 5000
    pieces = list(chunk(text, lambda: tokenizer, 50))
    assert all(n_tokens(tokenizer, p) <= 50 for p in pieces) and "".join(pieces) == text


def shared_text(before: str, after: str) -> str:
    """The longest text that ends ``before`` and starts ``after``."""
    return max((after[:k] for k in range(len(after) + 1) if before.endswith(after[:k])), key=len)


@pytest.mark.parametrize("overlap", [0, 20])
def test_overlap_repeats_the_tail_of_the_previous_chunk(tokenizer, overlap):
    text = " ".join(f"w{i}" for i in range(600))  # every word distinct: a repeat can only come from overlap
    pieces = list(chunk(text, lambda: tokenizer, 100, overlap=overlap))
    assert len(pieces) > 2
    for before, after in zip(pieces, pieces[1:]):
        shared = shared_text(before, after).strip()
        if overlap:  # the overlap starts at a token boundary, which may fall inside a word
            assert overlap - 4 <= n_tokens(tokenizer, shared) <= overlap + 2
        else:
            assert shared == ""
    if not overlap:
        assert " ".join(pieces) == text


@pytest.mark.parametrize(("segment", "cut"), [
    ("A" * 55 + "\n\n" + "B" * 10 + ". " + "C" * 40, 57),  # a paragraph break beats a later sentence end
    ("A" * 55 + ". " + "B" * 10 + "\n" + "C" * 40, 57),  # a sentence end beats a later line break
    ("A" * 55 + ".) " + "B" * 10 + "\n" + "C" * 40, 58),  # closing quotes and brackets stay with the sentence
    ("A" * 55 + "\n" + "B" * 10 + " " + "C" * 40, 56),  # a line break beats a later space
    ("A" * 55 + " " + "B" * 70, 56),  # else a space
    ("A" * 10 + "\n\n" + "B" * 110, 100),  # a break in the first half would make tiny chunks: ignored
    ("A" * 120, 100),  # no break at all: cut at the limit
])
def test_cut_preference(segment, cut):
    assert _best_break(segment, 100) == cut


def test_passage_budget_keeps_prompt_and_generation_in_the_window(tokenizer):
    budget = passage_token_budget(tokenizer, window=512, max_tokens=256)
    assert 0 < budget < 512 - 256
    assert passage_token_budget(tokenizer, window=None, max_tokens=256) == 2048
    assert passage_token_budget(tokenizer, window=32768, max_tokens=256) == 2048  # Bonito's training length
    with pytest.raises(ValueError, match="no room for a passage"):
        passage_token_budget(tokenizer, window=256, max_tokens=256)


def test_a_short_tail_joins_the_chunk_before_it_when_both_fit(tokenizer):
    body = long_document(4)
    tail = "The tenant pays rent on day 3."  # 9 tokens of the test tokenizer
    text = body + "\n\n" + tail
    budget = n_tokens(tokenizer, text) - 3  # too long for one chunk by a few tokens: the tail would be alone
    pieces, merged = chunk_document(text, lambda: tokenizer, budget)
    assert merged == n_tokens(tokenizer, tail) < min_tail_tokens(budget)
    assert pieces[-1].endswith(tail) and pieces[-1] != tail  # merged, not alone
    assert all(n_tokens(tokenizer, p) <= budget for p in pieces)
    assert " ".join(" ".join(p.split()) for p in pieces) == " ".join(text.split())  # nothing lost or repeated
    assert list(chunk(text, lambda: tokenizer, budget)) == pieces


@pytest.mark.parametrize("overlap", [0, 5])
def test_a_short_tail_that_cannot_join_is_cut_again_with_its_neighbour(tokenizer, overlap):
    body = " ".join(sample_passages(40)[:8])  # sentences: breaks all along
    tail = "The tenant pays rent on day 3."  # 9 tokens of the test tokenizer
    text = body + "\n\n" + tail
    budget = n_tokens(tokenizer, body) + 4  # the body fits, body + tail does not: the tail would be alone
    alone = [p for _, p in _chunks(text, tokenizer, budget, overlap)][-1]  # unmerged: the tail (and overlap)
    assert alone.endswith(tail) and n_tokens(tokenizer, alone) < min_tail_tokens(budget)
    pieces, merged = chunk_document(text, lambda: tokenizer, budget, overlap)
    assert merged == n_tokens(tokenizer, alone) and len(pieces) == 2
    assert all(n_tokens(tokenizer, p) <= budget for p in pieces)
    assert n_tokens(tokenizer, pieces[-1]) >= min_tail_tokens(budget) and pieces[-1].endswith(tail)
    if not overlap:
        assert " ".join(" ".join(p.split()) for p in pieces) == " ".join(text.split())
    else:
        assert pieces[1].startswith(shared_text(pieces[0], pieces[1])) and shared_text(pieces[0], pieces[1]).strip()


def test_a_long_enough_tail_and_a_single_chunk_are_left_alone(tokenizer):
    assert chunk_document("Rent is due.", lambda: tokenizer, 64) == (["Rent is due."], 0)
    text = long_document(30)
    pieces, merged = chunk_document(text, lambda: tokenizer, 120)
    assert merged == 0 or n_tokens(tokenizer, pieces[-1]) >= min_tail_tokens(120)
