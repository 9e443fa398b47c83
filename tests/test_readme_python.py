"""The Python API page's blocks (docs/python_api.md, linked from the README): read in order, as one session
would run them, they use no name they do not define or import; the CPU block runs as written, on the bundled
demo model."""
import ast
import builtins
import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python_api.md"
SECTION = "## Python API"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_api_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    return BLOCK.findall(text[start:end if end != -1 else None])


def undefined_names(blocks: list[str]) -> list[str]:
    """Names a block loads that neither it nor an earlier block binds, nor Python's builtins."""
    bound, missing = set(dir(builtins)), []
    for number, block in enumerate(blocks, 1):
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
        missing += [f"block {number}: {node.id}" for node in ast.walk(tree)
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound]
    return missing


@pytest.mark.static
def test_the_python_api_blocks_define_every_name_they_use():
    blocks = python_api_blocks()
    assert len(blocks) >= 3, "the CPU block, the GPU block and the whole job"
    assert undefined_names(blocks) == []


@pytest.mark.static
def test_an_undefined_name_is_found():
    assert undefined_names(["x = 1", "print(x, unannotated_text)"]) == ["block 2: unannotated_text"]


def test_the_cpu_block_runs_as_written(ray_cluster):
    cpu_block = python_api_blocks()[0]
    assert "DEMO_MODEL" in cpu_block and 'engine="hf"' in cpu_block
    session: dict = {}
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(cpu_block, f"{DOC}: the Python API's first block", "exec"), session)
    synthetic, passages = session["synthetic"], session["unannotated_text"]
    assert synthetic.summary.prompts == len(passages) == 2
    assert len(synthetic) + len(synthetic.rejects) >= len(passages)  # every prompt accepted or set aside
    for row in synthetic:
        assert any(text in row["input"] for text in passages["input"]), row
    assert "input" in shown.getvalue() and "output" in shown.getvalue()
