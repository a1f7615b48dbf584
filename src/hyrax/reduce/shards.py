"""reduce_dimensions on Dask workers (``[dask] scheduler``): the reducer is fitted once, in this process,
on the sample it always uses (or loaded from ``model_path``); each worker places a run of the results'
rows with that one fitted reducer (read from the results table, the version this process read), and the
coordinates come back here in row order, where the run's own writer writes them, as in one process.

A row's place depends on the row alone (its nearest fitted points, found pair by pair: the same on
any number of threads, see :func:`hyrax.compute.knn_on_any_threads`; or its PCA projection), so the map
equals the one-process map, bit for bit. A task whose worker dies is run again by another.

Memory per worker: the fitted reducer (UMAP: its sample and embedding, ``fit_sample_size`` x (input
dimension + components) x 4 bytes) and one shard's ids and coordinates (at most :data:`SHARD_ROWS`
rows). This process holds at most ``2 x workers`` shards' results waiting to be written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from hyrax.errors import ResultsError

logger = logging.getLogger(__name__)

#: Shards per worker: enough to balance them and to lose little when a worker dies ...
SHARDS_PER_WORKER = 4
#: ... and at most this many rows each (bounds a worker's and this process's memory at any N).
SHARD_ROWS = 1_048_576


def shard_rows(count: int, batch: int, workers: int) -> list[tuple[int, int]]:
    """Ranges of rows (runs of whole batches of ``batch`` rows) covering ``count`` rows once, in order.

    >>> shard_rows(10, 2, 1)
    [(0, 4), (4, 8), (8, 10)]
    """
    batches = math.ceil(count / batch)
    per = max(1, min(math.ceil(batches / (SHARDS_PER_WORKER * workers)), SHARD_ROWS // batch))
    return [(first * batch, min((first + per) * batch, count)) for first in range(0, batches, per)]


def place_on_cluster(
    client: Any, reducer: Any, results: Any, batch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, coordinates) of every row of ``results``, a batch at a time in row order, placed by the
    client's workers with ``reducer`` (fitted here, sent once)."""
    from hyrax.cluster import ordered_shards, worker_count

    workers = worker_count(client)
    ranges = shard_rows(len(results), batch, workers)
    table, version = str(results.table_path), int(results.version)
    at = 0
    placed = ordered_shards(client, place_rows, ranges, reducer, table, version, batch, window=2 * workers)
    for (start, stop), pieces in zip(ranges, placed, strict=True):
        if pieces[0] != (start, stop) or start != at:
            raise ResultsError(f"A Dask worker placed rows {pieces[0]}; rows {start}-{stop} were asked for.")
        yield from pieces[1]
        at = stop
    if at != len(results):
        raise ResultsError(f"The Dask workers placed {at:,} rows of {table}; it holds {len(results):,}.")


def place_rows(
    rows: tuple[int, int], reducer: Any, table: str, version: int, batch: int
) -> tuple[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]]:
    """A worker's task: (rows, [(ids, coordinates) per batch]) of the results rows ``rows``."""
    from hyrax.faults import fault_point
    from hyrax.results.store import ResultDataset

    results = ResultDataset(data_location=table)
    if int(results.version) != version:
        raise ResultsError(
            f"The results {table} changed (version {version} -> {results.version}) while they were reduced; "
            f"run reduce_dimensions again."
        )
    start, stop = rows
    pieces, count = [], 0
    for ids, vectors in results.iter_batches(batch, rows=rows):
        pieces.append((ids, reducer.transform(vectors)))
        count += len(ids)
    if count != stop - start:
        raise ResultsError(f"Read {count:,} rows of {table} from row {start:,}; expected {stop - start:,}.")
    fault_point("reduce.shard")
    return rows, pieces


def transform_rows(
    reducer: Any, results: Any, batch: int, client: Any, overlap: int, mapper: Callable
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, coordinates) of every row in order: on the client's workers, or here (``mapper``:
    :func:`hyrax.streaming.bounded_map`, reading and transforming overlapped)."""
    from hyrax.results.store import ResultDataset

    if client is not None and isinstance(results, ResultDataset):
        return place_on_cluster(client, reducer, results, batch)
    if client is not None:  # an infer_stream session's table, say: its rows are placed here
        logger.info("reduce_dimensions: %s is not an infer run's results table; placed here", results)
    return mapper(lambda item: (item[0], reducer.transform(item[1])), results.iter_batches(batch), overlap)
