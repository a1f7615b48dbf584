"""Outlier scores on Dask workers (``[dask] scheduler``): the k-th-neighbour search of
:mod:`hyrax.vector_db.kth_neighbour` cut into shards, each searched by a worker as this process would.

This process does everything that is done once: the sample, k-means, the lists and their file, the
calibration of ``nprobe`` (or building the graph and choosing its effort). Then

* lists: each task searches a run of consecutive blocks of lists, reading the grouped vectors from the
  file (kept by name in the run's ``lance_db`` directory while the workers need it), and returns each
  block's distances; the same blocks, searched the same way, as in one process.
* graph: the graph is written once to that directory; each task reads it, and a range of the results'
  rows from Lance (the version this process read), and returns their distances. Each query is searched
  on its own, so the ranges do not change a score.

The scores are gathered here and written once by :func:`hyrax.vector_db.outliers.score_run`. A task
whose worker dies is run again by another; its result depends only on its shard. Memory per worker: a
block of lists (~32 MB) and a 64 MB cache of lists, or the graph (~550 bytes an object at 64-d) and a
batch of rows.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hyrax.cluster import run_shards, worker_count
from hyrax.errors import ResultsError
from hyrax.faults import fault_point

logger = logging.getLogger(__name__)

#: Shards per worker: enough to balance uneven shards and to lose little when a worker dies.
SHARDS_PER_WORKER = 4
#: A graph task's rows: at least this many (each task reads the graph), at most the upper bound.
GRAPH_SHARD_ROWS = (16_384, 2**20)
#: Temporary files of a scorer left by a killed process (each scorer holds the run's lock first).
LEFTOVERS = (".outliers-*.vectors", ".outliers-*.graph")


def remove_leftovers(directory: Path) -> None:
    """Remove temporary files a killed scorer left in ``directory`` (called under the scoring lock, so
    none is in use)."""
    for pattern in LEFTOVERS:
        for path in Path(directory).glob(pattern):
            path.unlink(missing_ok=True)


def _single_threaded_faiss() -> None:
    """A task runs in one of its worker's threads: faiss uses that thread alone (Dask runs
    ``threads_per_worker`` tasks side by side)."""
    import faiss

    faiss.omp_set_num_threads(1)


# ------------------------------------------------------------------------------------------- lists


def blocks_on_cluster(client, search, nprobe: int, progress: Callable) -> list[tuple[int, np.ndarray]]:
    """(first file row, distances) of every block of ``search`` (a PartitionedSearch whose file is
    shared), searched by the client's workers, runs of consecutive blocks per task."""
    count = len(search.blocks)
    shards = min(count, SHARDS_PER_WORKER * worker_count(client))
    edges = np.linspace(0, count, shards + 1).round().astype(int)
    runs = [list(range(low, high)) for low, high in zip(edges[:-1], edges[1:], strict=True) if high > low]

    def each(found):
        for first, values in found:
            progress(first, values)

    logger.info(
        "outlier scores: %d blocks of lists in %d shards on %d workers",
        count,
        len(runs),
        worker_count(client),
    )
    found = run_shards(client, score_blocks, runs, search, nprobe, progress=each)
    pairs = [pair for run in found for pair in run]
    expected = [int(search.start[search.order[begin]]) for begin, _ in search.blocks]
    covered = sum(len(values) for _, values in pairs)
    if [first for first, _ in pairs] != expected or covered != search.count:
        raise ResultsError(
            f"The Dask workers returned {len(pairs)} blocks of lists holding {covered:,} objects for the outlier "
            f"scores; {count} blocks of {search.count:,} objects were planned, each once. Run outliers again; "
            f'if it repeats, set dask.scheduler = "none" and report it.'
        )
    return pairs


def score_blocks(numbers: list[int], search, nprobe: int) -> list[tuple[int, np.ndarray]]:
    """A worker's task: the blocks ``numbers`` of ``search`` (its own copy: its own file descriptor and
    cache, as tasks may share the worker's one deserialised search)."""
    _single_threaded_faiss()
    own = copy.copy(search)
    own.descriptor, own.cache, own.cache_bytes = os.open(own.path, os.O_RDONLY), OrderedDict(), 0
    try:
        found = [own.score_block(number, nprobe) for number in numbers]
    finally:
        os.close(own.descriptor)
    fault_point("outliers.shard")
    return found


# ------------------------------------------------------------------------------------------- graph


def graph_on_cluster(client, graph, results, k: int) -> np.ndarray:
    """Every row's k-th-neighbour distance in ``graph``, searched by the client's workers."""
    import faiss

    from hyrax.progress import Progress

    count = len(results)
    per = math.ceil(count / (SHARDS_PER_WORKER * worker_count(client)))
    per = min(max(per, GRAPH_SHARD_ROWS[0]), GRAPH_SHARD_ROWS[1])
    ranges = [(start, min(start + per, count)) for start in range(0, count, per)]
    path = results.table_path.parent / f".outliers-{os.getpid()}.graph"
    faiss.write_index(graph, str(path))
    scores = np.empty(count, dtype=np.float32)
    try:
        with Progress("outlier scores 4/4: neighbours (graph)", count) as progress:
            found = run_shards(
                client,
                score_graph_rows,
                ranges,
                str(path),
                int(graph.hnsw.efSearch),
                str(results.table_path),
                int(results.version),
                k,
                progress=lambda pair: progress.update(len(pair[1])),
            )
    finally:
        path.unlink(missing_ok=True)
    returned = [(start, start + len(values)) for start, values in found]
    if returned != ranges:
        raise ResultsError(
            f"The Dask workers returned {len(returned)} ranges of rows ({sum(b - a for a, b in returned):,} rows) "
            f"for the outlier scores; {len(ranges)} ranges covering all {count:,} rows were planned, each once. "
            f'Run outliers again; if it repeats, set dask.scheduler = "none" and report it.'
        )
    for start, values in found:
        scores[start : start + len(values)] = values
    return scores


def score_graph_rows(
    rows: tuple[int, int], graph_path: str, effort: int, table: str, version: int, k: int
) -> tuple[int, np.ndarray]:
    """A worker's task: (first row, distances) of the results rows ``rows``, searched in the graph."""
    import faiss

    from hyrax.results.store import ResultDataset
    from hyrax.vector_db.kth_neighbour import BATCH_BYTES, _flat, graph_distances

    _single_threaded_faiss()
    results = ResultDataset(data_location=table)
    if int(results.version) != version:
        raise ResultsError(
            f"The results {table} changed (version {version} -> {results.version}) while their outlier "
            f"scores were computed; run outliers again."
        )
    graph = faiss.read_index(graph_path)
    graph.hnsw.efSearch = effort
    start, stop = rows
    values = np.empty(stop - start, dtype=np.float32)
    row_bytes = 4 * max(1, int(np.prod(results.shape or (1,))))
    at = start
    for _, vectors in results.iter_batches(max(1024, BATCH_BYTES // row_bytes), rows=rows):
        vectors = _flat(vectors)
        values[at - start : at - start + len(vectors)] = graph_distances(graph, vectors, at, k)
        at += len(vectors)
    if at != stop:
        raise ResultsError(f"Read rows {start}-{at} of {table} for outlier scores; expected {start}-{stop}.")
    fault_point("outliers.shard")
    return start, values
