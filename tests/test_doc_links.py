"""Every relative link of the README and the docs pages listed leads somewhere: the file exists and, where the link
names a heading (``page.md#heading``), the page has that heading (GitHub's anchors). Static."""
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\]\(([^()\s]+)\)")


# The README and the docs pages it and the table of contents (docs/README.md) grew from; a page written
# since joins the list once its links are checked.
PAGES = ("README.md", "docs/README.md", "docs/install.md", "docs/cli.md", "docs/input.md", "docs/output.md",
         "docs/validators.md", "docs/python_api.md", "docs/engines.md", "docs/demo_model.md", "docs/reliability.md",
         "docs/privacy.md", "docs/benchmarks.md", "docs/development.md", "docs/quality.md", "docs/plan.md",
         "docs/generators.md", "docs/adapt.md", "docs/example.md", "docs/deploy.md", "docs/mutation.md",
         "docs/demo_model_review.md", "docs/card.md", "docs/self_guide.md",
         "docs/reproducibility.md")


def pages() -> list[Path]:
    return [ROOT / page for page in PAGES]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces as '-', repeats numbered."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text(encoding="utf-8")), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{page.relative_to(root)}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{page.relative_to(root)}: {target}: no such heading")
    return broken


def test_every_relative_link_resolves():
    assert [b for page in pages() for b in broken_links(page)] == []


def test_a_missing_file_or_heading_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Two words\n")
    page = tmp_path / "docs" / "b.md"
    page.write_text("[ok](a.md#two-words) [ok](a.md#a-page) [gone](c.md) [bad](a.md#three-words) [web](https://x.y)\n")
    assert broken_links(page, tmp_path) == ["docs/b.md: c.md: no such file",
                                            "docs/b.md: a.md#three-words: no such heading"]

