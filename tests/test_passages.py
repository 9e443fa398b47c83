"""Passage preparation: normalisation and token-aware chunking (no Ray needed)."""

import pytest

from bonito_ray.passages import chunk, normalize, passage_token_budget
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


def test_overlap_repeats_the_tail_of_the_previous_chunk(tokenizer):
    pieces = list(chunk(long_document(10), lambda: tokenizer, 100, overlap=20))
    assert len(pieces) > 2
    for before, after in zip(pieces, pieces[1:]):
        assert before[-30:].split()[-1] in after[:200]


def test_passage_budget_keeps_prompt_and_generation_in_the_window(tokenizer):
    budget = passage_token_budget(tokenizer, window=512, max_tokens=256)
    assert 0 < budget < 512 - 256
    assert passage_token_budget(tokenizer, window=None, max_tokens=256) == 2048
    assert passage_token_budget(tokenizer, window=32768, max_tokens=256) == 2048  # Bonito's training length
    with pytest.raises(ValueError, match="no room for a passage"):
        passage_token_budget(tokenizer, window=256, max_tokens=256)
