"""Claims carry their source (issue 27): every section of the README and the documentation that states a
speed or memory figure names the benchmark that produced it (`benchmarks/...`) and says whether the figure
was measured or extrapolated (planned, estimated). A section inherits the sources its parent sections
state (a page's "How it is measured" covers its tables)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = (
    r"(objects?/s|alerts?/s|cutouts?/s|rows?/s|vec/s|GB\b|MB\b|GiB|MiB|bytes? (?:per|an|a) object|"
    r"B per (?:added )?object|B/object|ms\b|minutes?\b|hours?\b|x faster|times faster)"
)
FIGURE = re.compile(r"[0-9][0-9,.]*\s?(?:k|M)?\s?" + UNITS)
SOURCED = re.compile(r"benchmarks/\w+\.py")
KIND = re.compile(r"\b(measured|extrapolated|planned|estimated)\b", re.IGNORECASE)
#: Pages that state no performance figures of ours (settings, flags, the move from 0.x).
NOT_CLAIMS = {"migration.md", "cli.md", "configuration.md"}


def sections(text: str):
    """(heading path, body) of every section, code blocks left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    path: list[tuple[int, str, str]] = [(0, "(top)", "")]
    for line in text.splitlines(keepends=True):
        heading = re.match(r"(#+) (.*)", line)
        if heading:
            level = len(heading.group(1))
            while path[-1][0] >= level:
                yield path[-1][1], path
                path = path[:-1]
            path = [*path, (level, heading.group(2).strip(), "")]
        else:
            level, title, body = path[-1]
            path[-1] = (level, title, body + line)
    while path:
        yield path[-1][1], path
        path = path[:-1]


def unsourced(page: Path) -> list[str]:
    found = []
    for title, path in sections(page.read_text(encoding="utf-8")):
        body = path[-1][2]
        context = "".join(part[2] for part in path)
        figure = FIGURE.search(body)
        if figure and not (SOURCED.search(context) and KIND.search(context)):
            found.append(f"{page.name} § {title}: '{figure.group(0)}'")
    return found


PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name not in NOT_CLAIMS)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_figure_names_its_benchmark_and_whether_it_was_measured(page):
    assert unsourced(page) == [], "name the benchmark (benchmarks/....py) and say measured or extrapolated"


def test_the_check_finds_an_unsourced_figure(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Fast\n\nIt infers 50,000 objects/s on 2 cores.\n\n## Sourced\n\n200 MB peak, measured by "
        "`python benchmarks/inference.py`.\n"
    )
    assert unsourced(page) == ["page.md § Fast: '50,000 objects/s'"]
