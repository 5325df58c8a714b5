"""The documentation holds together: every relative link resolves, the docs index lists every page,
and the README stays a short entry point (the detail lives under docs/)."""

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 160

# [text](target) — the target up to whitespace or ")", with an optional "title" after it.
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted(DOCS.glob("*.md"))]


def _prose_lines(page: Path) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks, numbered from 1 (links in code are not links)."""
    lines, in_code = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            lines.append((number, line))
    return lines


def _links(page: Path) -> list[tuple[int, str]]:
    return [(number, target) for number, line in _prose_lines(page) for target in LINK.findall(line)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for _, line in _prose_lines(page) if (m := HEADING.match(line))}


def _is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None  # http:, https:, mailto: …


def test_slug_follows_github():
    assert _slug("Configuration (environment variables)") == "configuration-environment-variables"
    assert _slug("Manual operations: the `qrl` CLI") == "manual-operations-the-qrl-cli"
    assert _slug("Outages are retried, then reported") == "outages-are-retried-then-reported"
    assert _slug("The 2024 chain in one run (`benchmarks/year.py`)") == "the-2024-chain-in-one-run-benchmarksyearpy"
    assert _slug("The [QRL](treasury.md) plan: `rebalance_plan`") == "the-qrl-plan-rebalance_plan"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file_and_heading(page):
    broken = []
    for number, target in _links(page):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{page.relative_to(ROOT)}:{number}: {target} — no file {resolved.relative_to(ROOT)}")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(
                f"{page.relative_to(ROOT)}:{number}: {target} — no heading #{anchor} in {path_part or 'this page'}"
            )
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_docs_index_lists_every_page():
    index = DOCS / "README.md"
    linked = {(index.parent / target.partition("#")[0]).resolve() for _, target in _links(index)}
    unlisted = [p.name for p in sorted(DOCS.glob("*.md")) if p != index and p.resolve() not in linked]
    assert not unlisted, f"docs/README.md does not link: {', '.join(unlisted)}"


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the detail into a page under docs/"
    )


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in _links(ROOT / "README.md")}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "README.md" and p.resolve() not in linked]
    assert not unlinked, f"README.md's 'Where to read on' does not link: {', '.join(unlinked)}"
