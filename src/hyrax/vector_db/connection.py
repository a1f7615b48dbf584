"""Opening the vector index of an inference run, and searching it by id, vector or image."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.results.run_dir import resolve_run
from hyrax.results.store import ResultDataset
from hyrax.vector_db import VECTOR_DBS

logger = logging.getLogger(__name__)


def results_run(config: Mapping, explicit=None) -> Path:
    return resolve_run(config, "infer", explicit or get_setting(config, "vector_db.infer_results_dir"))


def open_index(config: Mapping, run: Path):
    name = config["vector_db"]["name"]
    cls = VECTOR_DBS.get(name)
    directory = Path(get_setting(config, "vector_db.vector_db_dir") or run / "vector_db")
    settings = config["vector_db"].get(name, {}) if isinstance(config["vector_db"].get(name), Mapping) else {}
    if name == "lance":
        return cls(directory, results_dir=run, settings=dict(settings))
    return cls(directory, **{k: v for k, v in settings.items() if v is not False})


def save_to_database(config: Mapping, explicit=None, batch_size: int = 65536) -> tuple[Any, str]:
    """Index the results of an inference run; return (index, what was done). Re-running adds nothing twice."""
    from hyrax.progress import Progress

    run = results_run(config, explicit)
    index = open_index(config, run)
    if index.backend == "lance":
        from hyrax.progress import Waiting

        with Waiting(f"save_to_database: indexing {index.count():,} vectors in place (lance)"):
            return index, index.build()
    results = ResultDataset(config, run)
    with Progress(f"save_to_database ({index.backend})", total=len(results)) as progress:
        for ids, vectors in results.iter_batches(batch_size):
            index.insert(ids, vectors.reshape(len(vectors), -1))
            progress.update(len(ids))
    return index, f"{index.count()} vectors in {index.backend}"


class DatabaseConnection:
    """Similarity search over an inference run's vectors: by object id, by vector, or by image."""

    def __init__(self, config: Mapping, explicit=None):
        self.config = config
        self.run = results_run(config, explicit)
        self.index = open_index(config, self.run)
        self._model = None

    def search_by_id(self, object_id, k: int = 10):
        """``(ids, distances)`` of the k nearest neighbours of an object (itself first)."""
        ids, distances = self.index.search_by_id([str(object_id)], k)
        return ids[0], distances[0]

    def search_by_vector(self, vector: np.ndarray, k: int = 10):
        ids, distances = self.index.search(np.atleast_2d(vector), k)
        return ids[0], distances[0]

    def search_by_image(self, image: np.ndarray, k: int = 10, field: str = "image"):
        """Neighbours of a new image (or any field value): it goes through the model's prepare_inputs and
        infer_batch first, exactly as the indexed objects did."""
        return self.search_by_vector(self.embed({field: np.asarray(image)[None]})[0], k)

    def embed(self, fields: Mapping[str, np.ndarray]) -> np.ndarray:
        """Model outputs for a batch given as {field: array with the batch first}."""
        import torch

        from hyrax.config import ConfigManager
        from hyrax.config.data_request import primary_dataset
        from hyrax.models.model import to_torch
        from hyrax.training.inference import infer_provider, load_model, weights_location

        snapshot = ConfigManager(self.run / "runtime_config.toml").config
        if self._model is None:
            provider, indices = infer_provider(snapshot)
            self._model = load_model(snapshot, provider, int(indices[0]), weights_location(snapshot))
        model, prepare = self._model
        name = primary_dataset(snapshot["data_request"]["infer"])
        count = len(next(iter(fields.values())))
        batch = {name: dict(fields), "object_id": np.asarray([f"query{i}" for i in range(count)])}
        with torch.inference_mode():
            return model.infer_batch(to_torch(prepare(batch))).cpu().numpy().reshape(count, -1)
