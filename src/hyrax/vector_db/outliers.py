"""Outlier scores: how unusual each object of an inference run is, as the distance to its k-th nearest
neighbour in latent space (``method = "knn"``) or as an isolation forest's score (``"isolation_forest"``).

Every object of the results table is scored, and the scores are kept in
``<infer run>/lance_db/outliers.lance`` (``object_id``, ``outlier_score``: one row per result, in the
results' row order), whose schema metadata says what they were made from. Scoring again with the same
settings on the same results reuses the table; other settings, or changed results, recompute it all.

The k-th-neighbour distances are found by :mod:`hyrax.vector_db.kth_neighbour` (exactly in memory for
small tables; for large ones, exact search within the lists of a k-means partition nearest each object,
with the vectors on disk, or, where the data's intrinsic dimension is too high for lists, a search in an
HNSW graph held in memory).

>>> import tempfile, numpy as np
>>> from hyrax.results.store import ResultWriter
>>> run = Path(tempfile.mkdtemp())
>>> with ResultWriter(run, shape=(2,)) as writer:
...     writer.write(np.array(["a", "b", "c", "far"]), np.array([[0, 0], [0, 1], [1, 0], [9, 9]]))
>>> score_run(run, k=1)
4
>>> ranked(run, top=2)[["rank", "object_id", "row"]].values.tolist()
[[1, 'far', 3], [2, 'a', 0]]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.errors import ConfigError, HyraxError, ResultsError, ResultsWriteError
from hyrax.progress import Progress, Waiting
from hyrax.results.store import SCAN, ResultDataset, _has_versions, replace_table, table_path
from hyrax.vector_db.kth_neighbour import _batches, _sample, knn_scores

logger = logging.getLogger(__name__)

METHODS = ("knn", "isolation_forest")
FOREST_SAMPLE = 100_000
#: Scores read at a time by :func:`ranked` and :func:`score_range`.
READ_ROWS = 262_144
LOCK_NAME = "outliers.lock"


def scores_path(run: Path) -> Path:
    return table_path(run).with_name("outliers.lance")


# --------------------------------------------------------------------------------------- scoring


def score_run(
    run: Path,
    method: str = "knn",
    k: int = 10,
    seed: int = 0,
    nlist: int | None = None,
    nprobe: int | None = None,
    config: Mapping | None = None,
    wait: bool = True,
    time_budget: float | None = None,
) -> int:
    """Score every object of the infer run ``run``; return how many were scored (0 when the table of
    scores was up to date and is reused).

    Args:
        method, k: ``outliers.method`` and ``outliers.k``.
        nlist, nprobe: ``outliers.nlist`` / ``outliers.nprobe``; None chooses them from the data.
        config: for ``general.threads`` and ``[dask]`` (``dask.scheduler``: the k-th-neighbour search
            of a table above the exact limit runs on Dask workers, a shard each, with the same scores;
            the exact search of a small table and the isolation forest stay in this process).
        wait: when another process is scoring the same run, wait for it (True) or raise (False).
        time_budget: ``outliers.time_budget_minutes`` in seconds: the k-th-neighbour search may trade
            recall for time to fit it (said in a warning and in the scores' ``estimated_recall``).
    """
    from hyrax import __version__
    from hyrax.compute import use_threads

    _check_settings(method, k, nlist, nprobe)
    results = ResultDataset(data_location=run)
    with scoring_lock(run, wait):
        made_from = _made_from(results, method, k, nlist, nprobe)
        if time_budget is not None and method == "knn":
            made_from["time_budget_s"] = f"{time_budget:g}"
        current = scores_metadata(run)
        if current is not None and all(current.get(key) == value for key, value in made_from.items()):
            logger.info("outlier scores of %s are up to date (%s): reused", run, _describe(current))
            return 0
        threads = use_threads(config)
        if method == "knn":
            from hyrax.cluster import dask_client

            with dask_client(config) as client:
                if client is not None:
                    from hyrax.vector_db.outlier_shards import remove_leftovers

                    remove_leftovers(table_path(run).parent)
                scores, how = knn_scores(
                    results, k, nlist, nprobe, seed, table_path(run).parent, client, time_budget
                )
        else:
            scores, how = forest_scores(results, seed, threads)
        metadata = {**made_from, **how, "seed": str(seed), "hyrax_version": __version__}
        _write_scores(run, results, scores, metadata)
        logger.info("scored %s objects of %s (%s)", f"{len(scores):,}", run, _describe(metadata))
        return len(scores)


def _check_settings(method, k, nlist, nprobe) -> None:
    if method not in METHODS:
        raise ConfigError(f"outliers.method must be one of {', '.join(METHODS)}; got {method!r}.")
    for key, value, allow_none in (("k", k, False), ("nlist", nlist, True), ("nprobe", nprobe, True)):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            unset = " or false (chosen from the data)" if allow_none else ""
            raise ConfigError(f"outliers.{key} must be a whole number >= 1{unset}; got {value!r}.")


def _made_from(results: ResultDataset, method, k, nlist, nprobe) -> dict[str, str]:
    """What decides the scores: they are reused only when all of this is unchanged."""
    made_from = {
        "method": method,
        "results_rows": str(len(results)),
        "results_version": str(results.version),
    }
    if method == "knn":
        made_from |= {
            "k": str(k),
            "nlist_setting": str(nlist or "auto"),
            "nprobe_setting": str(nprobe or "auto"),
        }
    return made_from


def _describe(metadata: Mapping[str, str]) -> str:
    if metadata.get("method") != "knn":
        return metadata.get("method", "?")
    text = f"knn, k={metadata.get('k')}, {metadata.get('search')}"
    if metadata.get("search") == "partitioned":
        text += f", nlist={metadata.get('nlist')}, nprobe={metadata.get('nprobe')}"
        text += f", estimated recall {metadata.get('estimated_recall')}"
        if metadata.get("refined"):
            text += f", then the top {metadata['refined']}"
    elif metadata.get("search") == "graph":
        text = f"knn, k={metadata.get('k')}, graph (HNSW, {metadata.get('links')} links)"
        text += f", effort {metadata.get('effort')}, estimated recall {metadata.get('estimated_recall')}"
    return text


def scoring_lock(run: Path, wait: bool = True):
    """Hold the run's outlier-scoring lock (an OS lock: it dies with the process). A second scorer of
    the same run waits for the first (``wait``) or is refused with a message naming the process."""
    from hyrax import locks

    directory = table_path(run).parent
    if not os.access(directory, os.W_OK):
        raise ResultsWriteError(f"Cannot write outlier scores in {directory}: it is not writable.")
    return locks.exclusive(
        directory / LOCK_NAME,
        "outliers",
        lambda holder: HyraxError(
            f"{holder} is computing the outlier scores of {run}; wait for it to finish, then run outliers again."
        ),
        (lambda holder: Waiting(f"{holder} is computing the outlier scores of {run}: waiting for it"))
        if wait
        else None,
    )


def _write_scores(run: Path, results: ResultDataset, scores: np.ndarray, metadata: dict[str, str]) -> None:
    """Stream (object_id, outlier_score) in the results' row order into the scores table, as one Lance
    commit: until it lands, readers (and a run killed half-way) see the previous table whole."""

    import pyarrow as pa

    from hyrax.datasets.ids import arrow_strings

    path = scores_path(run)
    schema = pa.schema(
        [("object_id", pa.string()), ("outlier_score", pa.float32())],
        metadata={key.encode(): value.encode() for key, value in metadata.items()},
    )

    def batches():
        start = 0
        for ids, _ in results.iter_batches(65536, vectors=False):
            values = pa.array(scores[start : start + len(ids)], type=pa.float32())
            yield pa.RecordBatch.from_arrays([arrow_strings(ids), values], schema=schema)
            start += len(ids)

    replace_table(path, schema, batches(), "outlier scores")


# ---------------------------------------------------------------------------- isolation forest


def forest_scores(results: ResultDataset, seed: int, threads: int) -> tuple[np.ndarray, dict[str, str]]:
    """An isolation forest fitted on a seeded sample of at most :data:`FOREST_SAMPLE` objects, scoring
    every object a batch at a time (higher: more unusual)."""
    from sklearn.ensemble import IsolationForest

    count = len(results)
    rows, sample = _sample(results, FOREST_SAMPLE, seed, "isolation forest 1/2: sample")
    forest = IsolationForest(random_state=seed, n_jobs=threads).fit(sample)
    del sample
    scores = np.empty(count, dtype=np.float32)
    with Progress("isolation forest 2/2: scores", count) as progress:
        for start, _, vectors in _batches(results, check=False):
            scores[start : start + len(vectors)] = -forest.score_samples(vectors)
            progress.update(len(vectors))
    return scores, {"forest_sample": str(len(rows))}


# --------------------------------------------------------------------------------------- reading


def _scores_table(run: Path):
    """The scores table (Lance), or None when there is none."""
    import lance

    path = scores_path(run)
    if not path.exists() or not _has_versions(path):
        return None
    return lance.dataset(str(path))


def scores_metadata(run: Path) -> dict[str, str] | None:
    """What the run's scores were made from (method, k, nlist, nprobe, estimated_recall, results_rows,
    results_version, hyrax_version...), or None when it has none."""
    table = _scores_table(run)
    if table is None:
        return None
    return {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}


def stale_scores(run: Path) -> str | None:
    """Why the run's outlier scores no longer describe its results (they were computed from another
    version of the table), or None when they are current or there are none."""
    from hyrax.results.store import moved_on

    made = scores_metadata(run)
    changed = moved_on(made, run) if made is not None else []
    if not changed:
        return None
    return (
        f"the outlier scores of {run} were computed from another version of its results "
        f"({', '.join(changed)}): run `hyrax outliers` again to score the results as they are"
    )


def ranked(run: Path, top: int | None = None):
    """The scored objects, most unusual first, as a DataFrame: rank, object_id, outlier_score, row (the
    results row). The order is a stable sort by descending score (ties in row order); with ``top``,
    the scores are streamed and only the leaders are held."""
    import pandas as pd

    table = current_scores_table(run)
    if top is None:
        everything = table.to_table(columns=["object_id", "outlier_score"])
        rows = np.argsort(-everything.column("outlier_score").to_numpy(), kind="stable")
        found = everything.take(rows)
    else:
        rows = _top_rows(table, int(top))
        found = table.take(rows, columns=["object_id", "outlier_score"])
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1),
            "object_id": found.column("object_id").to_numpy(zero_copy_only=False).astype(str),
            "outlier_score": found.column("outlier_score").to_numpy(),
            "row": rows.astype(np.int64),
        }
    )


def _top_rows(table, top: int) -> np.ndarray:
    """Rows of the ``top`` highest scores, in descending score, ties in row order."""
    rows = np.empty(0, dtype=np.int64)
    scores = np.empty(0, dtype=np.float32)
    start = 0
    for batch in table.to_batches(columns=["outlier_score"], batch_size=READ_ROWS, **SCAN):
        values = batch.column(0).to_numpy()
        scores = np.concatenate([scores, values])
        rows = np.concatenate([rows, np.arange(start, start + len(values))])
        start += len(values)
        keep = np.lexsort((rows, -scores))[:top]
        rows, scores = rows[keep], scores[keep]
    return rows


def current_scores_table(run: Path):
    """The run's outlier scores table, scored from its results as they are; else a ResultsError saying
    to score (again)."""
    table = _scores_table(run)
    if table is None:
        raise ResultsError(f"No outlier scores for {run}: run `hyrax outliers` (or score_run) first.")
    stale = stale_scores(run)
    if stale:
        raise ResultsError(stale[0].upper() + stale[1:] + ".")
    return table


def read_scores(run: Path, rows) -> np.ndarray:
    """The scores of these results rows (float32; NaN where there is no table or no such row yet)."""
    rows = np.asarray(rows, dtype=np.int64)
    scores = np.full(len(rows), np.nan, dtype=np.float32)
    table = _scores_table(run)
    if table is None or not len(rows):
        return scores
    present = np.flatnonzero((rows >= 0) & (rows < table.count_rows()))
    if len(present):
        found = table.take(rows[present], columns=["outlier_score"]).column("outlier_score")
        scores[present] = found.to_numpy()
    return scores


def score_range(run: Path) -> tuple[float, float] | None:
    """(lowest, highest) score, streamed; None when there are no scores."""
    table = _scores_table(run)
    if table is None:
        return None
    low, high = np.inf, -np.inf
    for batch in table.to_batches(columns=["outlier_score"], batch_size=READ_ROWS, **SCAN):
        values = batch.column(0).to_numpy()
        if len(values):
            low, high = min(low, float(np.nanmin(values))), max(high, float(np.nanmax(values)))
    return (low, high) if low <= high else None
