"""Hyrax side by side with another Hyrax (the published 0.13, installed in another environment): the same
API pipeline on the same data, each run a fresh process of each side, alternating. Prints one table.

    python benchmarks/published.py --peer-python /path/to/other/venv/bin/python
                                   [--sizes 1000 10000 100000] [--repeats 3] [--lock FILE]

Every run is this file executed by a side's Python (``--case``), so each side imports its own Hyrax;
the script imports nothing of Hyrax at its top. A run times, in one fresh process: ``start`` (import
hyrax and Hyrax()), ``train`` (one epoch of HyraxAutoencoder), ``infer``, ``to_onnx``, and ``whole`` (the
process from its start). Data: HyraxRandomDataset of N 1x32x32 images, seed 42, batch 128, on both sides
(the same keys in both configs; each Hyrax makes its arrays from the seed itself). With ``--lock FILE``
each pair of runs (one a side) holds an exclusive flock on FILE, so that benchmarks which take the same
lock do not overlap. Ratios are peer time / our time (above 1: we are faster), the least and the median
over the repetitions. The load average is printed with each pair: on a shared machine the figures move
with it, and a table measured under load says so.

Only the API stages are here yet; the CLI commands, vector indexes and reductions of issue 31's table
are to be added the same way (a stage is a function of the case).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

STAGES = ("start", "train", "infer", "to_onnx", "whole")


def case(work: str, objects: str) -> dict:
    """One pipeline in this process, with whichever Hyrax this Python imports."""
    began = time.perf_counter()
    times = {}
    start = time.perf_counter()
    import hyrax

    h = hyrax.Hyrax()
    times["start"] = time.perf_counter() - start
    h.set_config("general.results_dir", os.path.join(work, "results"))
    h.set_config("data_set.HyraxRandomDataset.size", int(objects))
    h.set_config("data_set.HyraxRandomDataset.shape", [1, 32, 32])
    h.set_config("data_set.HyraxRandomDataset.seed", 42)
    h.set_config("data_loader.batch_size", 128)
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("train.epochs", 1)
    request = {
        "data": {
            "dataset_class": "HyraxRandomDataset",
            "data_location": work,
            "primary_id_field": "object_id",
        }
    }
    h.set_config("data_request", {"train": request, "infer": request})
    for stage in ("train", "infer", "to_onnx"):
        start = time.perf_counter()
        getattr(h, stage)()
        times[stage] = time.perf_counter() - start
    times["whole"] = time.perf_counter() - began
    return {"times": times, "version": getattr(hyrax, "__version__", "?")}


def run_side(python: str, objects: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        result = subprocess.run(
            [python, os.path.abspath(__file__), "--case", work, str(objects)],
            capture_output=True,
            text=True,
            check=False,
            cwd=work,
        )
        wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{python} failed at {objects} objects:\n{result.stderr[-3000:]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    found["times"]["whole"] = wall  # the process as a user waits for it, interpreter start included
    return found


@contextlib.contextmanager
def held(lock: str | None):
    """An exclusive flock on ``lock`` (none when not given), released on leaving."""
    if lock is None:
        yield
        return
    import fcntl

    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer-python", help="the Python of the environment holding the other Hyrax")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lock", help="a file to flock exclusively around each pair of runs")
    parser.add_argument("--case", nargs=2, metavar=("WORK", "OBJECTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(*args.case)))
        return
    if not args.peer_python:
        parser.error("--peer-python is required")
    sides = {"ours": sys.executable, "peer": args.peer_python}
    print(f"ours: {sys.executable}\npeer: {args.peer_python}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    table = []
    for objects in args.sizes:
        runs: dict[str, list[dict]] = {"ours": [], "peer": []}
        for repeat in range(args.repeats):
            order = ["ours", "peer"] if repeat % 2 == 0 else ["peer", "ours"]
            with held(args.lock):
                load = os.getloadavg()[0]
                for side in order:
                    runs[side].append(run_side(sides[side], objects))
            print(
                f"  {objects} objects, pair {repeat + 1} ({' then '.join(order)}), load {load:.1f}",
                flush=True,
            )
        versions = {side: runs[side][0]["version"] for side in runs}
        for stage in STAGES:
            ours = [r["times"][stage] for r in runs["ours"]]
            peer = [r["times"][stage] for r in runs["peer"]]
            ratios = [p / o for p, o in zip(peer, ours, strict=True)]
            table.append(
                (objects, stage, min(ours), min(peer), min(peer) / min(ours), statistics.median(ratios))
            )
    print(
        f"\nours {versions['ours']}, peer {versions['peer']}; ratio = peer time / our time (>1: ours faster)"
    )
    print(
        f"{'objects':>8} {'stage':8} {'ours min s':>10} {'peer min s':>10} {'ratio of mins':>13} {'median ratio':>12}"
    )
    for objects, stage, ours, peer, ratio, median in table:
        print(f"{objects:>8} {stage:8} {ours:>10.2f} {peer:>10.2f} {ratio:>13.2f} {median:>12.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
