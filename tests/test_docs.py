"""The README and docs/ as a newcomer meets them: a short README, links and images that exist,
and no path that exists only on the authors' machines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]

# [text](target) and ![alt](target); a target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def test_docs_exist():
    names = {p.name for p in DOCS}
    assert {"performance.md", "model-quality.md", "reliability.md", "development.md"} <= names


def test_readme_is_at_most_400_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 400


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_no_path_from_the_authors_machines(page):
    text = page.read_text(encoding="utf-8")
    for private in ("../shared", "/work/"):
        lines = [n for n, line in enumerate(text.splitlines(), 1) if private in line]
        assert not lines, f"{_page_id(page)} mentions {private!r} on line(s) {lines}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_and_images_exist(page):
    broken = []
    for target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif not dest.resolve().is_relative_to(REPO):
            broken.append(f"{target} (outside the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{_page_id(page)}: broken links: {broken}"


def test_every_image_the_docs_show_is_a_png_that_exists():
    images = [(page, t) for page in PAGES for t in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text())]
    assert images, "the README shows the example figures"
    for page, target in images:
        path = (page.parent / target).resolve()
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{_page_id(page)}: {target}"


def test_the_quality_table_markers_are_where_benchmarks_quality_writes():
    """`python benchmarks/quality.py --readme docs/model-quality.md` replaces the block between them."""
    text = (REPO / "docs" / "model-quality.md").read_text(encoding="utf-8")
    start, end = text.index("<!-- quality-table:start -->"), text.index("<!-- quality-table:end -->")
    assert start < end and "| preset |" in text[start:end]


def test_the_code_map_names_every_module():
    """docs/development.md's code map has one row per module of the package, and no stale row."""
    text = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    code_map = text.split("## Code map")[1].split("\n## ")[0]
    mapped = set(re.findall(r"^\| `([\w/]+\.py)` \|", code_map, re.MULTILINE))
    package = REPO / "vae_cli"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    assert not modules - mapped, f"docs/development.md's code map misses {sorted(modules - mapped)}"
    assert not mapped - modules, f"docs/development.md's code map names missing modules {sorted(mapped - modules)}"
