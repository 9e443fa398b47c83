"""Write the CPU-sized example's evaluation sets: gold-labelled questions on held-out sample documents.

The documents are new passages of the sample corpus's kinds (leases, SLAs, NDAs, HR and insurance
policies, clinical notes), drawn with their own seed, so that neither the generator's training
passages (``demo_train.jsonl``) nor the passages the example generates from (``corpus.jsonl``) hold
them. ``make_demo_corpus.py`` knows the fact behind every sentence, so each gold answer is the
passage's own value, not a model's guess:

- ``eval/ynqa.jsonl``: yes-no questions, half true and half false (classification, choices Yes/No);
- ``eval/exqa.jsonl``: questions whose answer is a span of the passage (extractive QA).

Each line is ``bonito-ray evaluate``'s format (``input``, ``answer``, and ``choices`` for
classification) plus ``passage_id``. The output is deterministic for a seed.

Usage: ``python jobs/examples/make_eval_sets.py [--seed 2024] [--documents 40]``
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from make_demo_corpus import KINDS, Passage, check_passage, make_passage

HERE = Path(__file__).resolve().parent
DEFAULT_SEED = 2024  # not make_demo_corpus's: other documents
DEFAULT_DOCUMENTS = 40
YES_NO = ["Yes", "No"]  # the answers the demo generator writes for ynqa


def documents(seed: int, count: int) -> list[Passage]:
    """``count`` fresh passages, the kinds in turn."""
    rng = random.Random(seed)
    passages = []
    for number in range(count):
        passage = make_passage(rng, KINDS[number % len(KINDS)], f"eval-{number:03d}")
        check_passage(passage)
        passages.append(passage)
    return passages


def ynqa_row(passage: Passage, rng: random.Random, answer_yes: bool) -> dict:
    question, answer = passage.yes_no(rng, answer_yes)
    return {"passage_id": passage.id, "input": f"{passage.text}\n\nAnswer yes or no: {question}",
            "choices": YES_NO, "answer": answer}


def exqa_row(passage: Passage, rng: random.Random) -> dict:
    question, answer = passage.extractive(rng)
    return {"passage_id": passage.id, "input": f"{passage.text}\n\nAnswer from the passage: {question}",
            "answer": answer}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--documents", type=int, default=DEFAULT_DOCUMENTS)
    parser.add_argument("--output-dir", type=Path, default=HERE / "eval")
    args = parser.parse_args()
    rng = random.Random(args.seed + 1)
    passages = documents(args.seed, args.documents)
    # Alternate true and false questions: a model that always says one answer scores 50% accuracy.
    ynqa = [ynqa_row(p, rng, answer_yes=i % 2 == 0) for i, p in enumerate(passages)]
    exqa = [exqa_row(p, rng) for p in passages]
    write_jsonl(args.output_dir / "ynqa.jsonl", ynqa)
    write_jsonl(args.output_dir / "exqa.jsonl", exqa)
    balance = sum(r["answer"] == "Yes" for r in ynqa)
    print(f"wrote {len(ynqa)} yes-no ({balance} Yes) and {len(exqa)} extractive questions on "
          f"{len(passages)} held-out documents to {args.output_dir}")


if __name__ == "__main__":
    main()
