"""The README's install and CI's are one script, and the examples do not write over each other (static)."""

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.static  # reads files, runs nothing

ROOT = Path(__file__).resolve().parents[1]


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)


def test_readme_and_ci_install_with_the_same_script_and_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "bash infra/install.sh" in shell_blocks(readme)[0]
    assert re.search(r"^TORCH_INDEX_URL=\S* bash infra/install.sh$", ci, flags=re.M)
    assert "pip install" not in ci  # every install step lives in the script
    test_command = next(b.strip() for b in shell_blocks(readme) if b.strip().startswith("python -m pytest"))
    assert ci.strip().splitlines()[-1] == test_command


def test_install_script_upgrades_pip_then_takes_torch_cpu_wheel_explicitly():
    script = (ROOT / "infra" / "install.sh").read_text()
    steps = [line.strip() for line in script.splitlines() if '"${pip[@]}"' in line]
    assert steps[0] == '"${pip[@]}" --upgrade pip'
    assert steps[1] == '"${pip[@]}" "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"'
    assert 'TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"' in script


def test_example_configs_write_to_their_own_outputs():
    readme = (ROOT / "README.md").read_text()
    quick_start = re.search(r"bonito-ray generate --input jobs/examples/corpus.jsonl --output (\S+)", readme)[1]
    outputs = [yaml.safe_load(p.read_text())["output"] for p in sorted((ROOT / "jobs" / "examples").glob("*.yaml"))]
    assert outputs and quick_start not in outputs and len(set(outputs)) == len(outputs)
