"""Outlier scores in one process against Dask workers (issue 29, item 4): wall time, peak RSS of the
scoring process and of each worker, and whether the scores are equal bit for bit.

    python benchmarks/outliers_dask.py --objects 200000 --workers 2 --shape lists --repeats 2

Each measurement runs in a fresh process (peak RSS is per process); the LocalCluster is started by the
benchmark and reached by its address, so its workers' peak RSS can be asked after the run. The two ways
alternate (one process, Dask, one process, ...) so that a change in the machine's load falls on both.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_vectors(objects: int, shape: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if shape == "lists":  # latent-like: clusters on a 6-d subspace of 16-d, a little noise everywhere
        basis = rng.standard_normal((6, 16)) / np.sqrt(6)
        centres = rng.standard_normal((50, 6)) * 4
        low = centres[rng.integers(50, size=objects)] + 0.7 * rng.standard_normal((objects, 6))
        return (low @ basis + 0.05 * rng.standard_normal((objects, 16))).astype(np.float32)
    centres = 3 * rng.standard_normal((20, 64))  # 64-d isotropic clusters: the graph
    return (centres[rng.integers(20, size=objects)] + rng.standard_normal((objects, 64))).astype(np.float32)


def measure(run: str, scheduler: str, workers: int) -> dict:
    """One scoring in this (fresh) process."""
    from hyrax.vector_db.outliers import score_run, scores_metadata

    config = {"general": {"threads": False}, "dask": {"scheduler": "none"}}
    cluster = client = None
    if scheduler == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
        config["dask"]["scheduler"] = cluster.scheduler_address
    start = time.perf_counter()
    score_run(Path(run), config=config)
    wall = time.perf_counter() - start
    found = {"wall_s": wall, "client_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    found["search"] = scores_metadata(Path(run))["search"]
    if client is not None:
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        found["worker_peak_mb"] = sorted(peaks.values())
        client.close()
        cluster.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shape", choices=["lists", "graph"], default="lists")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], int(args.one[2]))))
        return
    from hyrax.results.store import ResultWriter
    from hyrax.vector_db.outliers import read_scores, scores_path

    base = Path(tempfile.mkdtemp(prefix="outliers_dask_"))
    vectors = make_vectors(args.objects, args.shape)
    template = base / "template"
    with ResultWriter(template, shape=vectors.shape[1:]) as writer:
        for start in range(0, len(vectors), 65536):
            ids = np.char.add("obj", np.arange(start, min(start + 65536, len(vectors))).astype(str))
            writer.write(ids, vectors[start : start + 65536])
    del vectors
    with open("/proc/loadavg") as handle:
        print(f"load average at start: {handle.read().split()[:3]}", flush=True)
    scores = {}
    for repeat in range(args.repeats):
        for way in ("alone", "dask"):
            run = base / f"{way}-{repeat}"
            shutil.copytree(template, run)
            command = [sys.executable, __file__, "--one", str(run), way, str(args.workers)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            found = json.loads(out.strip().splitlines()[-1])
            print(f"{args.shape} {args.objects:,} {way:5} repeat {repeat}: {found}", flush=True)
            scores[(way, repeat)] = read_scores(run, np.arange(args.objects))
            shutil.rmtree(scores_path(run).parent / "index", ignore_errors=True)
    first = scores[("alone", 0)].view(np.uint32)
    for (way, repeat), value in scores.items():
        differ = int((first != value.view(np.uint32)).sum())
        print(f"{way} repeat {repeat} against alone repeat 0: {differ:,} of {args.objects:,} scores differ")
    with open("/proc/loadavg") as handle:
        print(f"load average at end: {handle.read().split()[:3]}")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
