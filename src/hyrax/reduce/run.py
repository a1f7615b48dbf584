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
    ResultDataset, else the latest complete infer run."""
    from hyrax.results.run_dir import resolve_run

    explicit = explicit or get_setting(config, "reduce_dimensions.input_dir")
    request = config.get("data_request", {}).get("reduce_dimensions")
    if explicit is None and request:
        spec = next(iter(request.values()))
        if spec.get("dataset_class") != "ResultDataset":
            raise ReducerError(
                "[data_request.reduce_dimensions] must hold a ResultDataset (the results of an infer run)."
            )
        explicit = spec.get("data_location")
    return ResultDataset(config, resolve_run(config, "infer", explicit))


def make_reducer(config: Mapping) -> tuple[Reducer, int]:
    """A fresh reducer of ``reduce_dimensions.name`` and its fit sample size."""
    settings = config["reduce_dimensions"]
    name = settings["name"]
    cls = REDUCERS.get(name)
    own = settings.get(name, {}) if isinstance(settings.get(name), Mapping) else {}
    seed = get_setting(config, "data_set.seed") or 0
    reducer = cls(n_components=int(settings["n_components"]), seed=int(seed), **dict(own.get("kwargs", {})))
    return reducer, int(own.get("fit_sample_size", 10_000))


def reduce_results(config: Mapping, results: ResultDataset, run_dir: Path) -> Reducer:
    """Fit (or load ``model_path``), then transform every row of ``results`` into ``run_dir``'s table."""
    settings = config["reduce_dimensions"]
    use_threads(config)
    model_path = get_setting(config, "reduce_dimensions.model_path")
    if model_path is not None:
        name = settings["name"]
        reducer = REDUCERS.get(name).load(model_path)
        if reducer.n_components != int(settings["n_components"]):
            raise ReducerError(
                f"The reducer in {model_path} gives {reducer.n_components} components; reduce_dimensions.n_components "
                f"is {settings['n_components']}. Set them alike, or fit a new reducer."
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
    with (
        ResultWriter(run_dir, (reducer.n_components,), "float32") as writer,
        Progress(f"reduce_dimensions ({reducer.name})", total=len(results)) as progress,
    ):
        batches = results.iter_batches(batch)
        for ids, coordinates in bounded_map(
            lambda item: (item[0], reducer.transform(item[1])), batches, overlap
        ):
            writer.write(ids, coordinates)
            progress.update(len(ids))
    return reducer
