"""The fault suite's table: where each kill landed and how the run ended, per writer and fault point.

A fault test calls :func:`record_landing` once per kill, after reading from disk where it struck. When
the environment variable ``HYRAX_FAULT_TABLE`` names a file, one JSON line is appended to it; otherwise
nothing happens (the ordinary suite writes nothing).

Run as a script, it runs the slow fault suite with ``HYRAX_FAULT_TABLE`` set to a temporary file and
prints a Markdown table (writer | point or random window | seeds/arrivals | where landed | outcomes)::

    python tests/fault_table.py                      # the whole fault suite (-m slow), ~20 min on 2 cores
    python tests/fault_table.py -k "train"           # extra pytest arguments are appended (a later -k wins)
    python tests/fault_table.py tests/test_fault_injection.py  # test paths named: only those are run
    python tests/fault_table.py --from landings.jsonl  # print the table of an earlier run's file

Tests of the selection that ran without recording a landing are listed under the table with their
outcome, so that a kill test which reports nothing is seen, not hidden.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from pathlib import Path

#: The environment variable naming the file the landings are appended to.
TABLE_VARIABLE = "HYRAX_FAULT_TABLE"

ROOT = Path(__file__).resolve().parent.parent

#: The files and the -k expression the script runs (those missing in this checkout are left out).
SELECTION = [
    "tests/test_fault_points.py",
    "tests/test_fault_injection.py",
    "tests/test_fault_points_writers.py",
    "tests/stream",
    "tests/download",
]
KEYWORDS = "kill or fault or race or racing"


def record_landing(writer: str, point: str, landed: dict, outcome: str) -> None:
    """Append where a kill landed to the file named by ``HYRAX_FAULT_TABLE`` (no-op when unset).

    Args:
        writer: what was killed ("infer", "save_to_database (qdrant)", ...).
        point: the fault point and arrival (``"results.committed:4"``), or ``"random window"``.
        landed: what was on disk before the resume (rows, commits, checkpoints, ...), read from disk.
        outcome: how it ended ("resumed: equal to an uninterrupted run", "refused: ...").

    >>> record_landing("infer", "results.committed:1", {"rows": 16}, "resumed: equal")  # unset: nothing
    """
    path = os.environ.get(TABLE_VARIABLE)
    if not path:
        return
    line = {
        "writer": writer,
        "point": point,
        "landed": landed,
        "outcome": outcome,
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0],
    }
    with open(path, "a", encoding="utf-8") as file:  # one write of one line: appends do not interleave
        file.write(json.dumps(line, default=str) + "\n")


def _number(value):
    """A landed value as a number for min-max (a list: its largest number, else its length)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (list, tuple)):
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return max(numbers) if numbers and len(numbers) == len(value) else len(value)
    return None


def _span(values: list) -> str:
    low, high = min(values), max(values)
    show = (lambda v: f"{v:.2f}") if any(isinstance(v, float) for v in values) else str
    return show(low) if low == high else f"{show(low)}-{show(high)}"


def table(lines: list[dict]) -> str:
    """The Markdown table of recorded landings, one row per (writer, point)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for line in lines:
        groups[(line["writer"], line["point"])].append(line)
    rows = [
        "| writer | point or random window | seeds/arrivals | where landed (min-max) | outcomes |",
        "|---|---|---|---|---|",
    ]
    for (writer, point), group in sorted(groups.items()):
        spans = defaultdict(list)
        for line in group:
            for key, value in line["landed"].items():
                number = _number(value)
                if number is not None:
                    spans[key].append(number)
        where = ", ".join(f"{key} {_span(values)}" for key, values in spans.items())
        outcomes = Counter(line["outcome"] for line in group)
        said = "; ".join(f"{count}x {outcome}" for outcome, count in outcomes.most_common())
        rows.append(f"| {writer} | {point} | {len(group)} | {where} | {said} |")
    return "\n".join(rows)


def _unrecorded(junit: Path, lines: list[dict]) -> list[str]:
    """'outcome test' for every test of the run that recorded no landing."""
    recorded = {line["test"].rsplit("::", 1)[-1] for line in lines}
    found = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if case.get("name") in recorded:
            continue
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = tag
        found.append(
            f"- {outcome}: {case.get('classname')}::{case.get('name')} ({float(case.get('time')):.0f} s)"
        )
    return found


def main(arguments: list[str]) -> int:
    if arguments[:1] == ["--from"]:
        lines = [json.loads(line) for line in Path(arguments[1]).read_text().splitlines() if line]
        print(table(lines))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        landings, junit = Path(folder) / "landings.jsonl", Path(folder) / "junit.xml"
        landings.touch()
        named = [a for a in arguments if not a.startswith("-") and (ROOT / a.split("::")[0]).exists()]
        paths = [] if named else [path for path in SELECTION if (ROOT / path).exists()]
        command = [
            *(sys.executable, "-m", "pytest", "-m", "slow", *paths, "-k", KEYWORDS),
            *("-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *arguments),
        ]
        print("$", " ".join(command), flush=True)
        done = subprocess.run(command, cwd=ROOT, env={**os.environ, TABLE_VARIABLE: str(landings)})
        lines = [json.loads(line) for line in landings.read_text().splitlines() if line]
        print()
        print(table(lines))
        if junit.exists():
            unrecorded = _unrecorded(junit, lines)
            if unrecorded:
                print("\nRan without recording where they landed:")
                print("\n".join(unrecorded))
        kept = Path(tempfile.gettempdir()) / "hyrax_fault_table.jsonl"  # for --from
        kept.write_text(landings.read_text())
        print(f"\n(landings kept in {kept}; pytest exit {done.returncode})")
        return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
