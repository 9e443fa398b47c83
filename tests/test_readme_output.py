"""The README's Output section reads the quick start's dataset: its block runs as written on a committed
dataset, and what its comments say holds (pandas reads the folder; polars needs the glob, the folder alone
fails)."""
import contextlib
import io
import re
from pathlib import Path

import polars
import pytest

from bonito_ray.config import GenerateConfig
from bonito_ray.pipeline import generate
from tests.corpus_files import write_jsonl
from tests.tiny_models import sample_passages

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def output_section(text: str) -> str:
    start = text.index("## Output\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_the_readme_block_reads_the_quick_starts_output(ray_cluster, random_model, tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    quick_start = re.search(r"bonito-ray generate --input jobs/examples/corpus.jsonl --output (\S+)", text)[1]
    (block,) = BLOCK.findall(output_section(text))
    assert f'"{quick_start}"' in block  # it reads what the quick start wrote
    corpus = write_jsonl(tmp_path / "corpus.jsonl", sample_passages(6))
    summary = generate(GenerateConfig(input=str(corpus), output=str(tmp_path / quick_start), engine="echo",
                                      model=random_model, task_types=["ynqa", "exqa"]))
    monkeypatch.chdir(tmp_path)  # the block's paths are relative, as after the quick start
    session: dict = {}
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(block, f"{README}: the Output section's block", "exec"), session)
    assert summary.accepted == {"ynqa": 6, "exqa": 6}
    assert len(session["by_pandas"]) == len(session["by_polars"]) == 12
    assert set(session["by_polars"]["task_type"]) == {"ynqa", "exqa"}
    assert "task_type" in shown.getvalue() and "output" in shown.getvalue()
    with pytest.raises(polars.exceptions.InvalidOperationError, match="glob"):  # as the block's comment says
        polars.read_parquet(quick_start)
