"""Labelling and re-ranking at survey scale: h.label, h.rank and h.suggest on an infer run of N objects
with 64-d latent vectors.

    python benchmarks/rerank.py                      # 10,000,000 objects (~10 min, 3 GB of disk)
    python benchmarks/rerank.py --n 1000000 --labels 500

Made once, untimed, in its own process (kept in --work for reuse): an infer run of N vectors drawn around
1,000 centres (a results table with its id index, written by the writer h.infer uses) and its outlier
scores, made by the public verb, h.outliers (with --outliers-method, "isolation_forest" by default: the
k-th-neighbour scorer's cost on these isotropic clusters is benchmarks/latent.py's and scale.py's
subject, and would dominate the making). Timed, in a fresh process, through the public path: h.label of
--labels objects (half of them from 20 "interesting" clusters, in one call each way), h.rank(top=100)
(the relevance model fitted and every object scored a batch at a time into ranking.lance, then a
streamed top-k), h.suggest(n=10) after one more label (a second full pass), and the process's peak
resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _harness import memory_mb, run_case

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DIM, CENTRES, CHUNK = 64, 1000, 500_000


def make(work: Path, count: int, method: str = "isolation_forest") -> dict:
    import numpy as np

    from hyrax import Hyrax
    from hyrax.config import ConfigManager
    from hyrax.results.run_dir import RunDir, find_latest_run
    from hyrax.results.store import ResultDataset, ResultWriter

    config = ConfigManager().config
    config["general"]["results_dir"] = str(work)
    run = find_latest_run(work, "infer")
    if run is not None and len(ResultDataset(data_location=run)) == count:
        return {"run": str(run), "made": False}
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CENTRES, DIM)).astype(np.float32) * 4
    started = time.perf_counter()
    with RunDir.create(config, "infer") as run_dir, ResultWriter(run_dir.path, (DIM,), "float32") as writer:
        for start in range(0, count, CHUNK):
            rows = np.arange(start, min(count, start + CHUNK))
            vectors = centres[rows % CENTRES] + rng.normal(size=(len(rows), DIM)).astype(np.float32)
            writer.write(np.char.add("obj", rows.astype(str)), vectors)
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(work))
    h.set_config("outliers.method", method)
    h.outliers(top=1, input_dir=run_dir.path)  # the scores h.rank reuses, made as a user makes them
    return {"run": str(run_dir.path), "made": True, "seconds": time.perf_counter() - started}


def timed(work: Path, labels: int) -> dict:
    import numpy as np

    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(work))
    rng = np.random.default_rng(1)
    interesting = rng.choice(CENTRES, 20, replace=False)
    count = None
    times = {}
    started = time.perf_counter()
    from hyrax.results.run_dir import find_latest_run
    from hyrax.results.store import ResultDataset

    count = len(ResultDataset(data_location=find_latest_run(work, "infer")))
    rows = rng.choice(count, labels * 4, replace=False)
    yes = rows[np.isin(rows % CENTRES, interesting)][: labels // 2]
    no = rows[~np.isin(rows % CENTRES, interesting)][: labels - len(yes)]
    h.label(np.char.add("obj", yes.astype(str)), 1)
    h.label(np.char.add("obj", no.astype(str)), 0)
    times["label"] = time.perf_counter() - started
    started = time.perf_counter()
    top = h.rank(top=100)
    times["rank"] = time.perf_counter() - started
    h.label(["obj0"], 0)
    started = time.perf_counter()
    suggested = h.suggest(n=10)
    times["suggest"] = time.perf_counter() - started
    precision = float(np.isin(top["object_id"].str[3:].astype(int) % CENTRES, interesting).mean())
    return {
        "objects": count,
        "labelled": int(len(yes) + len(no)),
        **times,
        "precision": precision,
        "suggested": len(suggested),
        "rss": memory_mb()[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--work", default="/tmp/hyrax_rerank_bench", help="where the infer run is kept")
    parser.add_argument(
        "--outliers-method",
        default="isolation_forest",
        help="outliers.method for the scores (knn is slow here)",
    )
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, work, value, *rest = args.case
        function = {"make": make, "timed": timed}[name]
        print(json.dumps(function(Path(work), int(value), *rest)))
        return
    work = Path(args.work) / f"{args.n}_{args.outliers_method}"
    made = run_case(__file__, "make", work, args.n, args.outliers_method)
    if made["made"]:
        print(f"made {args.n:,} objects in {made['seconds']:.0f} s: {made['run']}")
    import shutil

    for name in ("labels.lance",):
        shutil.rmtree(work / name, ignore_errors=True)
    row = run_case(__file__, "timed", work, args.labels)
    print(
        f"\n{row['objects']:,} objects, {DIM}-d latent vectors; {row['labelled']} labels; CPU (2 cores), a fresh process"
        f"\n\n{'step':<40} {'seconds':>8}"
    )
    print(f"{'h.label (two calls)':<40} {row['label']:>8.1f}")
    print(f"{'h.rank(top=100): fit, score all, top-k':<40} {row['rank']:>8.1f}")
    print(f"{'h.suggest(n=10) after one more label':<40} {row['suggest']:>8.1f}")
    print(
        f"\npeak resident memory {row['rss']:,.0f} MB; top 100 from the interesting clusters: {row['precision']:.0%}"
    )


if __name__ == "__main__":
    main()
