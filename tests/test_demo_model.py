"""The bundled demo model through the whole pipeline: genuine model output, parsed and filtered."""

import json
from pathlib import Path

import pyarrow.dataset as pds
import pytest

from bonito_ray.config import DEMO_MODEL, GenerateConfig
from bonito_ray.passages import normalize
from bonito_ray.pipeline import generate

CORPUS = Path(__file__).resolve().parents[1] / "jobs" / "examples" / "corpus.jsonl"


def test_demo_model_is_the_default_and_small():
    assert GenerateConfig(input="i", output="o").model == DEMO_MODEL
    size = sum(f.stat().st_size for f in Path(DEMO_MODEL).iterdir())
    assert size < 20 * 2**20


def test_demo_model_writes_real_tasks(ray_cluster, tmp_path):
    lines = CORPUS.read_text().splitlines()[:8]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), seed=0))
    assert summary.passages == 8 and summary.prompts == 24
    # Measured on the 48-passage sample (docs/demo_model.md): every generation parses; ynqa and nli are almost all
    # accepted, about a third of exqa answers are not a span of the passage. Bounds leave room for
    # sampling luck (batches formed differently change the logits' last bits, and so samples).
    assert sum(summary.rejected.values()) <= 1, summary.rejected  # generation: Bonito's format
    assert summary.accepted.get("ynqa", 0) + summary.accepted.get("nli", 0) >= 14, summary.accepted
    assert summary.accepted.get("exqa", 0) >= 1, summary.filtered
    rows = pds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    contexts = {normalize(json.loads(line)["text"]) for line in lines}
    for row in rows:
        assert row["context"] in contexts and row["input"] and row["output"]
        assert "<|pipe|>" not in row["input"] + row["output"]
    ynqa = [r["output"] for r in rows if r["task_type"] == "ynqa"]
    assert ynqa and all(o.lower().startswith(("yes", "no")) for o in ynqa)
    # Tasks put the passage back where the model wrote {{context}}.
    assert any(r["context"] in r["input"] for r in rows)


@pytest.mark.parametrize("path", ["config.json", "tokenizer.json", "model.safetensors"])
def test_demo_model_files_are_present(path):
    assert (Path(DEMO_MODEL) / path).exists()
