"""The evaluation protocols ``evaluate --protocol`` offers: how each kind of set is decoded and scored.

- ``bonito`` (the Bonito paper): classification sets by ranked classification (the choices' summed
  log-probabilities), macro-F1; generation sets by greedy decoding of at most 25 tokens, SQuAD F1.
- ``self-guide`` (the SELF-GUIDE paper): every set by greedy decoding; classification scored by exact
  match after mapping the text to its first label, generation by ROUGE-L (``metrics``). The two variants
  are SELF-GUIDE's "prompting" (the base model) and "fine-tuned" (base + adapter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bonito_ray.adapt.evalsets import CLASSIFICATION, GENERATION, EvalSet
from bonito_ray.adapt.metrics import classification_scores, label_scores, rouge_scores, squad_scores
from bonito_ray.adapt.scoring import ADAPTED, ZERO_SHOT
from bonito_ray.self_guide.config import SelfGuideConfig

Scores = Callable[[EvalSet, list[str]], dict[str, float]]  # (set, predictions) -> metric -> fraction

METRIC_LABELS = {"macro_f1": "macro-F1", "f1": "SQuAD F1", "exact_match": "exact match", "rouge_l": "ROUGE-L"}


@dataclass(frozen=True)
class Protocol:
    name: str
    ranks_choices: bool  # classification by ranked choices; else generated like the rest
    scores: dict[str, Scores]  # set kind -> its metrics
    metric: dict[str, str]  # set kind -> the metric of the table and the average
    max_new_tokens: int  # the default generation budget
    variants: dict[str, str]  # ZERO_SHOT / ADAPTED -> what the table calls them


def _golds(eval_set: EvalSet) -> list[str]:
    return [answers[0] for answers in eval_set.answers]  # a classification row has exactly one


BONITO = Protocol(
    name="bonito", ranks_choices=True,
    scores={CLASSIFICATION: lambda s, p: classification_scores(p, _golds(s)),
            GENERATION: lambda s, p: squad_scores(p, s.answers)},
    metric={CLASSIFICATION: "macro_f1", GENERATION: "f1"},
    max_new_tokens=25,  # the paper's budget for extractive QA
    variants={ZERO_SHOT: "zero-shot", ADAPTED: "adapted"})

SELF_GUIDE = Protocol(
    name="self-guide", ranks_choices=False,
    scores={CLASSIFICATION: lambda s, p: label_scores(p, _golds(s), s.choices),
            GENERATION: lambda s, p: rouge_scores(p, s.answers)},
    metric={CLASSIFICATION: "exact_match", GENERATION: "rouge_l"},
    max_new_tokens=SelfGuideConfig.output_max_tokens,  # what the student had to annotate its own data
    variants={ZERO_SHOT: "prompting", ADAPTED: "fine-tuned"})

PROTOCOLS = {p.name: p for p in (BONITO, SELF_GUIDE)}
