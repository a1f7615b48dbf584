"""What every benchmark script shares: running one case in a fresh process, running the sides of a
comparison alternately (each run in a fresh process), torch's thread count, and peak memory."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Hashable, Iterator, Mapping, Sequence


def peak_rss_mb() -> float:
    """Peak resident memory of this process (or its largest child), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def memory_mb() -> tuple[float, float]:
    """(resident now, peak resident) of this process from /proc/self/status, in MB. Unlike ru_maxrss, the
    peak (VmHWM) starts afresh at exec, so a case does not inherit the peak of the process that started it."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _ = line.split()
                values[key] = int(amount) / 1024
    return values["VmRSS:"], values["VmHWM:"]


def run_case(script: str, *args) -> dict:
    """Run ``script --case ARGS`` in a fresh process (so its peak RSS is its own); return its JSON line."""
    result = subprocess.run(
        [sys.executable, script, "--case", *map(str, args)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"case {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def alternating(sides: Sequence[Hashable], repeats: int) -> Iterator[Hashable]:
    """The sides in turn, ``repeats`` rounds, each round starting one side later (A B, B A, A B...; with
    three sides A B C, B C A, C A B): no side always runs first."""
    sides = list(sides)
    for round_number in range(repeats):
        shift = round_number % len(sides)
        yield from sides[shift:] + sides[:shift]


def run_alternating(
    script: str, sides: Mapping[Hashable, Sequence], repeats: int
) -> dict[Hashable, list[dict]]:
    """Run every side's case (``sides[name]``: its ``run_case`` arguments) ``repeats`` times, each run in
    a fresh process, in :func:`alternating` order; return each side's results in the order they ran."""
    results: dict[Hashable, list[dict]] = {name: [] for name in sides}
    for name in alternating(list(sides), repeats):
        results[name].append(run_case(script, *sides[name]))
    return results


def best_of(runs: Sequence[dict], keys: Sequence[str] = ("wall", "cpu")) -> dict:
    """The first run with each of ``keys`` (times) replaced by its least over ``runs`` (those that have it):
    on a machine whose speed drifts, the least is the fairest figure of each side."""
    kept = dict(runs[0])
    for key in keys:
        if key in kept:
            kept[key] = min(run[key] for run in runs)
    return kept


def torch_threads(count: int) -> int:
    """Set torch's intra-op threads to ``count`` (0: leave torch's default for this process); return the
    number in use. Call it first thing in a case, on both sides of a comparison."""
    import torch

    if count > 0:
        torch.set_num_threads(count)
    return torch.get_num_threads()
