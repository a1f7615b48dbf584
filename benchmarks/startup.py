"""Start-up time: `hyrax --help` and `python -c "import hyrax; hyrax.Hyrax()"`, median of 5 runs. Prints
one table.

Run:  python benchmarks/startup.py [--runs 5]
Targets on the project's 2-core machine: under 0.5 s and under 1.0 s.

How it is fair: each run is a fresh process started the way a user starts it (the installed `hyrax`
script; the venv's python), in an empty directory (no hyrax_config.toml to read), with the environment
of this shell. Every command first runs once untimed, so all of them start with the same warm state
(bytecode compiled, files in the page cache: what a user sees from the second start on), and then the
commands take turns, round after round, so a slow spell of the shared machine falls on all of them
alike. The interpreter alone is the reference: the part of a start-up that Hyrax cannot shorten.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seconds(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each command; the median is kept")
    args = parser.parse_args()
    hyrax_command = shutil.which("hyrax", path=str(Path(sys.executable).parent))
    cases = [
        ("hyrax --help", [hyrax_command or "hyrax", "--help"], 0.5),
        (
            'python -c "import hyrax; hyrax.Hyrax()"',
            [sys.executable, "-c", "import hyrax; hyrax.Hyrax()"],
            1.0,
        ),
        ("python -c pass (interpreter alone)", [sys.executable, "-c", "pass"], None),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    with tempfile.TemporaryDirectory() as cwd:  # no hyrax_config.toml around
        for _, command, _ in cases:
            seconds(command, cwd)  # warm-up, untimed
        for _ in range(args.runs):
            for name, command, _ in cases:
                times[name].append(seconds(command, cwd))
    print(f"\n{'command':<45} {'median of ' + str(args.runs) + ' (s)':>18} {'target (s)':>11} {'ok':>4}")
    for name, _, target in cases:
        median = statistics.median(times[name])
        verdict = "" if target is None else ("yes" if median < target else "NO")
        print(f"{name:<45} {median:>18.3f} {target if target else '':>11} {verdict:>4}")


if __name__ == "__main__":
    main()
