"""docs/development.md's Layout names every module of the library's top level and of its packages but adapt/
(whose modules the adapt docs name), so the map a contributor reads first does not go stale."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("", "corpus", "engines", "generators", "self_guide")


def layout_section() -> str:
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    start = text.index("## Layout\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def unnamed_modules(section: str) -> list[str]:
    named = set(re.findall(r"`([\w/]+)`", section))
    return [f"{package + '/' if package else ''}{path.stem}"
            for package in PACKAGES for path in sorted((ROOT / "bonito_ray" / package).glob("*.py"))
            if path.stem != "__init__" and path.stem not in named]


def test_the_layout_names_every_module():
    assert unnamed_modules(layout_section()) == []


def test_a_module_left_out_is_found():
    assert "engines/vllm_pool" in unnamed_modules(layout_section().replace("`vllm_pool`", "vllm_pool"))
