"""The papers' metrics; all scores are fractions in [0, 1], reports multiply by 100 as the papers' tables do.

- Bonito: macro-F1 for ranked classification, SQuAD F1 / exact match for extractive QA.
- SELF-GUIDE: exact match for classification, the generated text mapped to a label first (the mapping
  SELF-GUIDE's annotation uses, ``bonito_ray.self_guide.vote.to_label``); ROUGE-L for generation, by
  Google's ``rouge-score`` package with Porter stemming, as Super-NaturalInstructions scores it.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bonito_ray.self_guide.vote import to_label

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised prediction equals the normalised gold answer, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token-overlap F1 of normalised answers (two empty answers agree: 1.0, as SQuAD 2.0 scores it)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean SQuAD ``f1`` and ``exact_match``; each prediction takes its best score over its gold answers."""
    if not predictions:
        raise ValueError("no predictions to score")
    f1 = [max(token_f1(p, g) for g in gs) for p, gs in zip(predictions, golds, strict=True)]
    em = [max(exact_match(p, g) for g in gs) for p, gs in zip(predictions, golds, strict=True)]
    return {"f1": sum(f1) / len(f1), "exact_match": sum(em) / len(em)}


def macro_f1(predictions: Sequence[str], golds: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over every label seen in ``golds`` or ``predictions``."""
    if not predictions:
        raise ValueError("no predictions to score")
    labels = set(golds) | set(predictions)
    pairs = list(zip(predictions, golds, strict=True))
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in pairs)
        fp = sum(p == label and g != label for p, g in pairs)
        fn = sum(p != label and g == label for p, g in pairs)
        scores.append(2 * tp / (2 * tp + fp + fn))  # never 0/0: the label occurs somewhere
    return sum(scores) / len(scores)


def accuracy(predictions: Sequence[str], golds: Sequence[str]) -> float:
    """Share of predictions equal to their gold label."""
    if not predictions:
        raise ValueError("no predictions to score")
    return sum(p == g for p, g in zip(predictions, golds, strict=True)) / len(predictions)


def classification_scores(predictions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """``macro_f1`` (the paper's metric) and ``accuracy`` of label predictions."""
    return {"macro_f1": macro_f1(predictions, golds), "accuracy": accuracy(predictions, golds)}


def label_scores(generations: Sequence[str], golds: Sequence[str],
                 labels: Sequence[Sequence[str]]) -> dict[str, float]:
    """SELF-GUIDE's classification metric: ``exact_match``, the share of generations whose first label (of
    their row's ``labels``: whole words, case-insensitive) is the gold one, and ``no_label``, the share in
    which no label was found at all (they count as wrong)."""
    if not generations:
        raise ValueError("no predictions to score")
    mapped = [to_label(g, tuple(ls)) for g, ls in zip(generations, labels, strict=True)]
    return {"exact_match": sum(m == g for m, g in zip(mapped, golds, strict=True)) / len(mapped),
            "no_label": sum(m is None for m in mapped) / len(mapped)}


def rouge_available() -> bool:
    """Whether rouge-score (the train extra) can be imported here."""
    return importlib.util.find_spec("rouge_score") is not None


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer  # the train extra; imported here, where it is used

    # Lowercased tokens of letters and digits (anything else separates them), Porter-stemmed.
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F-measure of ``prediction`` against ``gold``: from their longest common subsequence of tokens
    (precision LCS / prediction tokens, recall LCS / gold tokens); 0.0 when either has no token."""
    return _rouge_scorer().score(gold, prediction)["rougeL"].fmeasure  # score(target, prediction)


def rouge_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ``rouge_l``; each prediction takes its best score over its gold answers."""
    if not predictions:
        raise ValueError("no predictions to score")
    scores = [max(rouge_l(p, g) for g in gs) for p, gs in zip(predictions, golds, strict=True)]
    return {"rouge_l": sum(scores) / len(scores)}
