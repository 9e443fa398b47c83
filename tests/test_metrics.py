"""The papers' metrics against hand-computed values, and ranked classification on a model whose log-probs are known."""

import math

import pytest
import torch

from bonito_ray.adapt.metrics import (accuracy, classification_scores, exact_match, label_scores, macro_f1,
                                      normalize_answer, rouge_l, rouge_scores, squad_scores, token_f1)
from bonito_ray.adapt.scoring import continuation_logprobs


def test_squad_normalisation():
    assert normalize_answer("  The Cat,  sat on A mat! ") == "cat sat on mat"
    assert normalize_answer("an apple's core") == "apples core"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_token_f1_and_exact_match():
    # pred {cat, sat}, gold {cat, sat, down}: precision 1, recall 2/3 -> F1 0.8
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # duplicates count once per match
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("the", "a") == 1.0  # both normalise to empty
    assert exact_match("The Cat.", "cat") == 1.0 and exact_match("cat sat", "cat") == 0.0


def test_squad_scores_take_the_best_gold_answer():
    scores = squad_scores(["cat sat", "Paris", "dog"], [["a cat sat down", "cat"], ["paris", "in Paris"], ["bird"]])
    # row 1: max(0.8, 2/3) = 0.8, EM 0; row 2: F1 1, EM 1; row 3: 0, 0
    assert scores["f1"] == pytest.approx((0.8 + 1 + 0) / 3)
    assert scores["exact_match"] == pytest.approx(1 / 3)


def test_macro_f1_and_accuracy():
    golds = ["yes", "yes", "no", "no", "no"]
    preds = ["yes", "no", "no", "no", "yes"]
    # yes: tp 1, fp 1, fn 1 -> 2/4; no: tp 2, fp 1, fn 1 -> 4/6
    assert macro_f1(preds, golds) == pytest.approx((0.5 + 4 / 6) / 2)
    assert accuracy(preds, golds) == pytest.approx(0.6)
    # a label only predicted counts with F1 0: yes 2/3, maybe 0
    assert macro_f1(["yes", "maybe"], ["yes", "yes"]) == pytest.approx(1 / 3)
    assert classification_scores(["a", "b"], ["a", "b"]) == {"macro_f1": 1.0, "accuracy": 1.0}
    with pytest.raises(ValueError):
        macro_f1([], [])


def test_rouge_l_is_the_lcs_f_measure_of_stemmed_lowercase_tokens():
    # 6 and 6 tokens, LCS "the cat on the mat" = 5: P = R = 5/6
    assert rouge_l("the cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
    # a subsequence, not a substring: LCS "police killed" (or "the gunman") = 2 of 4 and 4
    assert rouge_l("police killed the gunman", "the gunman police killed") == pytest.approx(0.5)
    # case and punctuation go, Porter stems meet (tenants/tenant, paying/pays -> pay): LCS 3, P 3/3, R 3/5
    assert rouge_l("Tenants paying rent.", "the tenant pays the rent") == pytest.approx(2 * 1 * 0.6 / 1.6)
    # LCS "a b" = 2: P 2/2, R 2/3
    assert rouge_l("a b", "b a b") == pytest.approx(0.8)
    assert rouge_l("", "rent") == 0.0 and rouge_l("rent", "rent") == 1.0
    # each prediction takes its best gold: max(0.5, 1.0) and max(0.0) -> mean 0.5
    assert rouge_scores(["police killed", "dog"], [["police killed the gunman", "Police killed."], ["cat"]]) == \
        {"rouge_l": pytest.approx(0.5)}
    with pytest.raises(ValueError):
        rouge_scores([], [])


def test_label_exact_match_maps_a_generation_to_its_first_label():
    labels = [["tenant", "landlord"]] * 6
    generations = ["tenant", "The Landlord.", "landlord, not the tenant", "tenants", "", 'tenant"\n[input] = "x']
    golds = ["tenant", "landlord", "tenant", "tenant", "landlord", "tenant"]
    # right: 1 (exact), 2 (case, punctuation), 6 (the label, whatever follows); wrong: 3 (landlord comes
    # first), 4 (no whole-word label), 5 (empty)
    assert label_scores(generations, golds, labels) == {"exact_match": pytest.approx(3 / 6),
                                                        "no_label": pytest.approx(2 / 6)}
    # two labels at one position: the longer one
    assert label_scores(["Not bad."], ["not bad"], [["not", "not bad"]])["exact_match"] == 1.0
    with pytest.raises(ValueError):
        label_scores([], [], [])


class BigramModel(torch.nn.Module):
    """Next-token logits depend on the current token only: log-probabilities are known by hand."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, input_ids, attention_mask=None):
        return type("Output", (), {"logits": self.table[input_ids]})()


def test_ranked_classification_sums_choice_logprobs_and_picks_the_highest():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125],   # after token 0
                          [0.1, 0.2, 0.3, 0.4],        # after token 1
                          [0.7, 0.1, 0.1, 0.1],        # after token 2
                          [0.25, 0.25, 0.25, 0.25]])   # after token 3
    model = BigramModel(probs.log())
    prompt = [3, 0]
    choices = {"a": [1], "b": [2, 0], "c": [3, 3]}
    scores = continuation_logprobs(model, [prompt] * 3, list(choices.values()), pad_id=0, device="cpu")
    expected = [math.log(0.25),                     # P(1 | 0)
                math.log(0.125) + math.log(0.7),    # P(2 | 0) P(0 | 2)
                math.log(0.125) + math.log(0.25)]   # P(3 | 0) P(3 | 3)
    assert scores == pytest.approx(expected)
    assert list(choices)[scores.index(max(scores))] == "a"
