"""Reducing a whole results table: fit on a seeded sample, transform every row in batches, write a
table aligned with the object ids.

Reading, transforming and writing overlap (:func:`~hyrax.streaming.bounded_map`): at most two batches
wait in memory, so memory does not grow with the number of objects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.compute import use_threads
from hyrax.config import get_setting
from hyrax.progress import Progress
from hyrax.reduce import REDUCERS
from hyrax.reduce.base import Reducer, ReducerError
from hyrax.results.store import ResultDataset, ResultWriter
from hyrax.streaming import bounded_map

logger = logging.getLogger(__name__)


def input_results(config: Mapping, explicit=None) -> ResultDataset:
    """The vectors to reduce: explicit, reduce_dimensions.input_dir, a [data_request.reduce_dimensions]
    ResultDataset, else the latest complete infer run. An explicit run may be an infer_stream run (read
    as the table its session kept; it may still be running: what it holds now is mapped)."""
    from hyrax.results.run_dir import resolve_run
    from hyrax.results.stream_results import StreamResults, is_stream_run

    explicit = explicit or get_setting(config, "reduce_dimensions.input_dir")
    request = config.get("data_request", {}).get("reduce_dimensions")
    if explicit is None and request:
        spec = next(iter(request.values()))
        if spec.get("dataset_class") != "ResultDataset":
            raise ReducerError(
                "[data_request.reduce_dimensions] must hold a ResultDataset (the results of an infer run)."
            )
        explicit = spec.get("data_location")
    if explicit is not None and is_stream_run(Path(explicit).expanduser()):
        results = StreamResults(explicit)
        logger.info(
            "mapping the %d results %s holds now (version %d)", len(results), explicit, results.version
        )
        return results
    return ResultDataset(config, resolve_run(config, "infer", explicit))


def _own(config: Mapping) -> Mapping:
    """The ``[reduce_dimensions.<name>]`` table of the algorithm in use (empty when it has none)."""
    settings = config["reduce_dimensions"]
    own = settings.get(settings["name"], {})
    return own if isinstance(own, Mapping) else {}


def components(config: Mapping) -> int:
    """Output dimensions: the algorithm's own ``kwargs.n_components`` (the published Hyrax's per-algorithm
    key) when set, else ``reduce_dimensions.n_components``."""
    kwargs = _own(config).get("kwargs", {}) or {}
    return int(kwargs.get("n_components", config["reduce_dimensions"]["n_components"]))


def model_path(config: Mapping):
    """A fitted reducer to reuse: ``reduce_dimensions.model_path`` (any algorithm), else the algorithm's
    own ``model_path`` (``[reduce_dimensions.umap] model_path``, as published); None: fit a new one."""
    given = get_setting(config, "reduce_dimensions.model_path")
    if given is None:
        own = _own(config).get("model_path", False)
        given = None if own is False else own
    return given


def make_reducer(config: Mapping) -> tuple[Reducer, int]:
    """A fresh reducer of ``reduce_dimensions.name`` and its fit sample size."""
    settings = config["reduce_dimensions"]
    cls = REDUCERS.get(settings["name"])
    own = _own(config)
    kwargs = {k: v for k, v in dict(own.get("kwargs", {})).items() if k != "n_components"}
    seed = get_setting(config, "data_set.seed") or 0
    reducer = cls(n_components=components(config), seed=int(seed), **kwargs)
    return reducer, int(own.get("fit_sample_size", 10_000))


def reduce_results(config: Mapping, results: ResultDataset, run_dir: Path) -> Reducer:
    """Fit (or load ``model_path``), then transform every row of ``results`` into ``run_dir``'s table."""
    settings = config["reduce_dimensions"]
    use_threads(config)
    fitted = model_path(config)
    if fitted is not None:
        name = settings["name"]
        reducer = REDUCERS.get(name).load(fitted)
        if reducer.n_components != components(config):
            raise ReducerError(
                f"The reducer in {fitted} gives {reducer.n_components} components; reduce_dimensions.n_components "
                f"is {components(config)}. Set them alike, or fit a new reducer."
            )
    else:
        reducer, sample_size = make_reducer(config)
        rng = np.random.default_rng(reducer.seed)
        from hyrax.compute import sample_rows

        rows = sample_rows(len(results), sample_size, rng)
        logger.info("fitting %s on %d of %d rows", reducer.name, len(rows), len(results))
        reducer.fit(results[rows].reshape(len(rows), -1))
    reducer.save(Path(run_dir) / "reducer")
    batch = int(settings["batch_size"])
    overlap = 1 if settings["parallel"] else 0  # one thread transforms while this one reads and writes
    from hyrax.cluster import dask_client
    from hyrax.reduce.shards import transform_rows

    # [dask] scheduler: the rows are placed by Dask workers (reduce/shards.py), written here in order.
    with (
        dask_client(config) as client,
        ResultWriter(run_dir, (reducer.n_components,), "float32") as writer,
        Progress(f"reduce_dimensions ({reducer.name})", total=len(results)) as progress,
    ):
        for ids, coordinates in transform_rows(reducer, results, batch, client, overlap, bounded_map):
            writer.write(ids, coordinates)
            progress.update(len(ids))
    return reducer
