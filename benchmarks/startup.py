"""Start-up time: `hyrax --help` and `python -c "import hyrax; hyrax.Hyrax()"`, median of 5 runs.

Run:  python benchmarks/startup.py
Targets on the project's 2-core machine: under 0.5 s and under 1.0 s.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 5


def median_seconds(command: list[str], cwd: str) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
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
    with tempfile.TemporaryDirectory() as cwd:  # no hyrax_config.toml around
        rows = [(name, median_seconds(command, cwd), target) for name, command, target in cases]
    print(f"{'command':<45} {'median of ' + str(RUNS) + ' (s)':>18} {'target (s)':>11} {'ok':>4}")
    for name, seconds, target in rows:
        verdict = "" if target is None else ("yes" if seconds < target else "NO")
        print(f"{name:<45} {seconds:>18.3f} {target if target else '':>11} {verdict:>4}")


if __name__ == "__main__":
    main()
