"""Qdrant (local mode) through Hyrax's index: insert of N 64-d vectors and 1,000 searches (k=10), each
size in a fresh process. Prints one table; --profile also prints where the time went, split into
Hyrax's own code, qdrant-client's and the rest (numpy, sqlite, pydantic).

    python benchmarks/qdrant.py [--sizes 10000 100000] [--searches 1000] [--profile]

The load average is printed: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from _harness import run_case


def vectors(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return np.char.add("obj", np.arange(count).astype(str)), rng.standard_normal(
        (count, 64), dtype=np.float32
    )


def case_index(objects: str, searches: str, profile: str) -> dict:
    import cProfile
    import pstats

    from hyrax.vector_db.qdrant_index import QdrantIndex

    ids, data = vectors(int(objects))
    profiler = cProfile.Profile() if profile == "1" else None
    with tempfile.TemporaryDirectory() as directory:
        index = QdrantIndex(directory, 64)
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        index.insert(ids, data)
        insert = time.perf_counter() - start
        rows = np.random.default_rng(1).integers(0, len(data), int(searches))
        queries = data[rows]
        start = time.perf_counter()
        found, _ = index.search(queries, 10)
        search = time.perf_counter() - start
        if profiler:
            profiler.disable()
            profiler.dump_stats(f"/tmp/qdrant_{objects}.prof")
        assert (found[:, 0] == ids[rows]).all()  # each query is a stored vector: its nearest is itself
        assert index.count() == len(ids)
    shares: dict[str, float] = {}
    if profiler:
        stats = pstats.Stats(profiler).stats
        for (filename, _, _), (_, _, own, _, _) in stats.items():
            owner = (
                "hyrax"
                if "/hyrax/" in filename
                else "qdrant_client"
                if "qdrant_client" in filename
                else "other"
            )
            shares[owner] = shares.get(owner, 0.0) + own
    return {"insert": insert, "search": search, "shares": shares}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[10000, 100000])
    parser.add_argument("--searches", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--case", nargs="*")
    args = parser.parse_args()
    if args.case:
        import json

        print(json.dumps(case_index(*args.case)))
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print(
        f"{'objects':>8} {'insert s':>9} {'inserts/s':>10} {args.searches} searches s {'searches/s':>10}  load"
    )
    for objects in args.sizes:
        result = run_case(__file__, objects, args.searches, int(args.profile))
        print(
            f"{objects:>8} {result['insert']:>9.2f} {objects / result['insert']:>10.0f} "
            f"{result['search']:>{len(str(args.searches)) + 11}.2f} {args.searches / result['search']:>10.0f}  "
            f"{os.getloadavg()[0]:.1f}"
        )
        if result["shares"]:
            total = sum(result["shares"].values())
            print(
                "          own time: "
                + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in result["shares"].items())
            )


if __name__ == "__main__":
    main()
