"""The CPU stages on Dask workers (issue 29, item 4) against one process: outlier scores, reduce_dimensions
(PCA, and UMAP's placement of every row into a map fitted on a sample) and the Lance vector index build.
For each stage and way (one process; a LocalCluster of 1 worker; of 2 workers): wall time, the time of the
part the workers do (their shards, timed in the client around the gather), objects per second per
worker in that part, peak RSS of the client and of each worker (VmHWM, read in each worker), and
whether the result equals the one-process result (scores and coordinates bit for bit; the index: rows
indexed, and the ids and distances of 200 searches).

    nice -n 19 python benchmarks/cpu_stages_dask.py --objects 200000 --stages outliers reduce index \
        --workers 0 1 2 --memory-limit 1GB

Each case runs in a fresh process (its own peak RSS) with its own LocalCluster (processes, one thread a
worker, ``--memory-limit`` each), reached by its address. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import memory_mb, run_case  # noqa: E402

STAGES = ("outliers", "pca", "umap", "index")


def make_vectors(objects: int, seed: int = 0) -> np.ndarray:
    """Latent-like: clusters on a 6-d subspace of 16-d, a little noise everywhere (outliers' lists)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((6, 16)) / np.sqrt(6)
    centres = rng.standard_normal((50, 6)) * 4
    low = centres[rng.integers(50, size=objects)] + 0.7 * rng.standard_normal((objects, 6))
    return (low @ basis + 0.05 * rng.standard_normal((objects, 16))).astype(np.float32)


def _worker_peak() -> float:
    return memory_mb()[1]


def _timed(module, name: str, spent: list) -> None:
    """Wrap ``module.name`` (a shard runner) so that the time spent in it is added to ``spent``."""
    real = getattr(module, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = real(*args, **kwargs)
        if hasattr(result, "__next__"):  # a generator: time it as it is consumed

            def consumed():
                began = time.perf_counter()
                yield from result
                spent.append(time.perf_counter() - began)

            spent.append(time.perf_counter() - start)
            return consumed()
        spent.append(time.perf_counter() - start)
        return result

    setattr(module, name, timed)


def case(stage: str, run: str, workers: int, memory_limit: str, segment_rows: int, umap_sample: int) -> dict:
    """One stage in this (fresh) process; ``workers`` 0: no Dask."""
    import hyrax.cluster as cluster_module
    import hyrax.reduce.shards as reduce_shards
    import hyrax.vector_db.lance_index as lance_index
    import hyrax.vector_db.outlier_shards as outlier_shards

    lance_index.SEGMENT_ROWS = segment_rows
    spent: list[float] = []
    _timed(outlier_shards, "run_shards", spent)  # the outliers' shards (imported there by name)
    _timed(cluster_module, "run_shards", spent)  # the index segments (imported from here when built)
    _timed(reduce_shards, "place_on_cluster", spent)  # the placement, with the writing it overlaps
    config = {"general": {"threads": False}, "dask": {"scheduler": "none"}}
    cluster = client = None
    if workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",
        )
        client = Client(cluster)
        config["dask"]["scheduler"] = cluster.scheduler_address
    run = Path(run)
    start = time.perf_counter()
    if stage == "outliers":
        from hyrax.vector_db.outliers import score_run

        score_run(run, config=config)
    elif stage in ("pca", "umap"):
        from hyrax.config import ConfigManager
        from hyrax.reduce.run import reduce_results
        from hyrax.results.store import ResultDataset

        full = ConfigManager().config
        full["dask"] = {**full["dask"], **config["dask"]}
        full["reduce_dimensions"]["name"] = stage
        full["reduce_dimensions"]["umap"]["fit_sample_size"] = umap_sample
        reduce_results(full, ResultDataset(data_location=run), run / f"reduced-{stage}")
    else:
        from hyrax.vector_db.lance_index import LanceIndex

        index = LanceIndex(run / "vector_db", results_dir=run, settings={"index_threshold": 1000})
        from hyrax.cluster import dask_client

        with dask_client(config) as dask:
            found = index.build(client=dask)
        print(found, file=sys.stderr)
    wall = time.perf_counter() - start
    found = {"wall_s": round(wall, 2), "client_peak_mb": round(memory_mb()[1])}
    if workers:
        found["shards_s"] = round(sum(spent), 2)
        found["worker_peak_mb"] = sorted(round(value) for value in client.run(_worker_peak).values())
        client.close()
        cluster.close()
    return found


def result_of(stage: str, run: Path):
    """What must be equal across the ways."""
    if stage == "outliers":
        from hyrax.vector_db.outliers import read_scores

        return read_scores(run, np.arange(count_rows(run)))
    if stage in ("pca", "umap"):
        from hyrax.results.store import ResultDataset

        reduced = ResultDataset(data_location=run / f"reduced-{stage}")
        return reduced[np.arange(len(reduced))]
    from hyrax.vector_db.lance_index import LanceIndex

    index = LanceIndex(run / "vector_db", results_dir=run, settings={"index_threshold": 1000})
    queries = make_vectors(200, seed=7)
    ids, distances = index.search(queries, k=10)
    return np.concatenate([np.array([index.count()], dtype=np.float32), distances.ravel()]), ids


def count_rows(run: Path) -> int:
    from hyrax.results.store import ResultDataset

    return len(ResultDataset(data_location=run))


def same(first, second) -> bool:
    if isinstance(first, tuple):
        return same(first[0], second[0]) and first[1].tolist() == second[1].tolist()
    return first.shape == second.shape and bool((first.view(np.uint32) == second.view(np.uint32)).all())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--segment-rows", type=int, default=2**18, help="Lance index rows per segment")
    parser.add_argument("--umap-sample", type=int, default=10_000, help="UMAP's fit_sample_size")
    parser.add_argument("--case", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        stage, run, workers, limit, segment_rows, umap_sample = args.case
        print(json.dumps(case(stage, run, int(workers), limit, int(segment_rows), int(umap_sample))))
        return
    from hyrax.results.store import ResultWriter

    base = Path(tempfile.mkdtemp(prefix="cpu_stages_dask_", dir=os.environ.get("BENCH_TMP")))
    template = base / "template"
    vectors = make_vectors(args.objects)
    with ResultWriter(template, shape=(16,)) as writer:
        for start in range(0, len(vectors), 65536):
            ids = np.char.add("obj", np.arange(start, min(start + 65536, len(vectors))).astype(str))
            writer.write(ids, vectors[start : start + 65536])
    del vectors
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for stage in args.stages:
        results = {}
        for workers in args.workers:
            run = base / f"{stage}-{workers}"
            shutil.copytree(template, run)
            found = run_case(
                __file__, stage, run, workers, args.memory_limit, args.segment_rows, args.umap_sample
            )
            results[workers] = result_of(stage, run)
            found["equal_to_one_process"] = same(results[args.workers[0]], results[workers])
            shards = found.get("shards_s")
            if shards:
                found["objects_per_s_per_worker_in_shards"] = round(args.objects / shards / workers)
            found["objects_per_s"] = round(args.objects / found["wall_s"])
            print(f"{stage} {args.objects:,} workers={workers}: {found}", flush=True)
            shutil.rmtree(run, ignore_errors=True)
        print(f"load average: {os.getloadavg()}", flush=True)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
