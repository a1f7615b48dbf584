"""Opening the vector index of an inference run, and searching it by id, vector or image."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.faults import fault_point
from hyrax.results.run_dir import resolve_run
from hyrax.results.store import ResultDataset, results_record
from hyrax.vector_db import VECTOR_DBS

logger = logging.getLogger(__name__)


def results_run(config: Mapping, explicit=None) -> Path:
    return resolve_run(config, "infer", explicit or get_setting(config, "vector_db.infer_results_dir"))


def index_directory(config: Mapping, run: Path) -> Path:
    return Path(get_setting(config, "vector_db.vector_db_dir") or run / "vector_db")


def open_index(config: Mapping, run: Path):
    name = config["vector_db"]["name"]
    cls = VECTOR_DBS.get(name)
    directory = index_directory(config, run)
    settings = config["vector_db"].get(name, {}) if isinstance(config["vector_db"].get(name), Mapping) else {}
    if name == "lance":
        return cls(directory, results_dir=run, settings=dict(settings))
    return cls(directory, **{k: v for k, v in settings.items() if v is not False})


#: Written into an index directory outside its infer run, so that the directory alone can be opened.
INDEX_FILE = "hyrax_vector_db.toml"


def index_directory_settings(directory) -> dict | None:
    """``{"backend", "infer_run"}`` of an index directory written by save_to_database, or None when
    ``directory`` is not one (an infer run, for instance)."""
    path = Path(directory).expanduser() / INDEX_FILE
    if not path.is_file():
        return None
    import tomllib

    return tomllib.loads(path.read_text())


def _describe_index(index, run: Path) -> None:
    from hyrax.results.run_dir import write_text_atomic

    directory = Path(index.directory)
    if directory.resolve() == (run / "vector_db").resolve() or not directory.is_dir():
        return
    import tomlkit

    text = tomlkit.dumps({"backend": index.backend, "infer_run": str(run.resolve())})
    write_text_atomic(directory / INDEX_FILE, text)


def save_to_database(config: Mapping, explicit=None, batch_size: int = 65536) -> tuple[Any, str]:
    """Index the results of an inference run; return (index, what was done). Re-running adds nothing
    twice; one save writes an index directory at a time (a second is refused, naming the first)."""
    from hyrax import locks
    from hyrax.vector_db.base import VectorDBError

    run = results_run(config, explicit)
    directory = index_directory(config, run)
    directory.mkdir(parents=True, exist_ok=True)
    with locks.exclusive(  # taken before the index is opened: some backends lock it themselves
        directory / WRITER_LOCK,
        "save_to_database",
        lambda holder: VectorDBError(
            f"The index in {directory} is being written by {holder}. Wait for it to finish, then run "
            f"save_to_database again (it adds what is missing)."
        ),
    ):
        return _save(config, run, open_index(config, run), batch_size)


#: The lock a save_to_database holds on its index directory.
WRITER_LOCK = ".hyrax_writer.lock"


def _save(config: Mapping, run: Path, index, batch_size: int) -> tuple[Any, str]:
    import time

    from hyrax.progress import Progress
    from hyrax.training.tracking import IndexingLog

    if index.backend != "lance":
        results = ResultDataset(config, run)
        index.check_made_from(run, "adding this run's vectors")
    _describe_index(index, run)
    if index.backend == "lance":
        from hyrax.progress import Waiting

        # the index is built in place in one call: TensorBoard gets it as one batch
        with (
            IndexingLog(index.directory) as log,
            Waiting(f"save_to_database: indexing {index.count():,} vectors in place (lance)"),
        ):
            from hyrax.cluster import dask_client

            start = time.perf_counter()
            with dask_client(config) as client:  # [dask] scheduler: the segments built by its workers
                done = index.build(client=client)
            log.batch(time.perf_counter() - start, index.count())
            return index, done
    index.mark_building(len(results), {"infer_run": str(Path(run).resolve()), **results_record(run)})
    with (
        IndexingLog(index.directory) as log,
        Progress(f"save_to_database ({index.backend})", total=len(results)) as progress,
    ):
        for ids, vectors in results.iter_batches(batch_size):
            start = time.perf_counter()
            index.insert(ids, vectors.reshape(len(vectors), -1))
            log.batch(time.perf_counter() - start, len(ids))
            fault_point("vector_db.batch_inserted")
            progress.update(len(ids))
    index.mark_complete(len(results))
    return index, f"{index.count()} vectors in {index.backend}"


class Neighbours(dict):
    """Nearest neighbours, as the published Hyrax returns them: ``{query: neighbour ids, nearest first}``.

    The query is the object id (``search_by_id``) or the position of the vector in the list
    (``search_by_vector``, ``search_by_image``). The neighbour ids are a list of str, as published (so
    ``found == {"a": ["a", "b"]}`` and ``json.dumps(found)`` work); ``distances`` holds the distances the
    same way, as numpy arrays.

    >>> found = Neighbours({"a": np.array(["a", "b"])}, {"a": np.array([0.0, 1.5])})
    >>> found, found.distances["a"].tolist()
    (Neighbours({'a': ['a', 'b']}, distances={'a': array([0. , 1.5])}), [0.0, 1.5])
    """

    def __init__(self, ids: Mapping, distances: Mapping):
        super().__init__({query: np.asarray(found).astype(str).tolist() for query, found in ids.items()})
        self.distances = dict(distances)

    def __repr__(self) -> str:
        return f"Neighbours({dict(self)!r}, distances={self.distances!r})"


class DatabaseConnection:
    """Similarity search over an inference run's vectors: by object id, by vector, or by image."""

    def __init__(self, config: Mapping, explicit=None):
        self.config = config
        self.run = results_run(config, explicit)
        self.index = open_index(config, self.run)
        complete = self.index.is_complete  # counts the index (chromadb: ~10 ms at 100,000): once here
        if self.index.backend != "lance" and self.index.held() == 0:
            from hyrax.vector_db.base import VectorDBError

            raise VectorDBError(
                f"The {self.index.backend} index in {self.index.directory} is empty: run `hyrax save_to_database` "
                f"first (or again, if it was interrupted)."
            )
        if not complete:
            from hyrax.vector_db.base import VectorDBError

            marker = self.index._marker()
            wanted = marker.get("objects")
            how_far = (
                f"holds {self.index.count():,} of the {wanted:,} objects its save_to_database inserted"
                if marker.get("complete")  # marked complete, and vectors were lost since
                else f"save_to_database stopped after {self.index.count():,} of "
                f"{wanted if wanted is not None else '?'} objects"
            )
            raise VectorDBError(
                f"The {self.index.backend} index in {self.index.directory} is unfinished: {how_far}. "
                f"Run save_to_database again: it adds what is missing."
            )
        if self.index.backend != "lance":
            self.index.check_made_from(self.run, "searching it with this run's data")
        self._model = None
        self._results = None

    def search_by_id(self, id, k: int = 10) -> Neighbours:  # noqa: A002 - the published argument name
        """The k nearest neighbours of an object (itself first): ``{id: ids}``, distances in ``.distances``."""
        ids, distances = self.index.search_by_id([str(id)], k)
        return Neighbours({str(id): ids[0]}, {str(id): distances[0]})

    def search_by_vector(self, vectors, k: int = 10) -> Neighbours:
        """The k nearest neighbours of each vector of a list (or 2-D array, or one vector):
        ``{position in the list: ids}``, distances in ``.distances``."""
        queries = np.asarray(
            [np.asarray(v).reshape(-1) for v in vectors] if isinstance(vectors, list) else vectors
        )
        if queries.ndim == 1:
            queries = queries[None]
        queries = queries.reshape(len(queries), -1)
        ids, distances = self.index.search(queries, k)
        return Neighbours(dict(enumerate(ids)), dict(enumerate(distances)))

    def get_by_id(self, ids) -> dict[str, np.ndarray]:
        """The vectors of the given object ids: ``{id: vector}``. An unknown id is an error naming it."""
        wanted = [str(i) for i in ([ids] if isinstance(ids, str | int) else ids)]
        if self._results is None:  # opened once: a look-up reads its rows, nothing else
            self._results = ResultDataset(self.config, self.run)
        vectors = self._results.lookup_many(wanted)
        return dict(zip(wanted, vectors, strict=True))

    def search_by_image(self, image: np.ndarray, k: int = 10, field: str = "image"):
        """Neighbours of a new image (or any field value): it goes through the model's prepare_inputs and
        infer_batch first, exactly as the indexed objects did."""
        return self.search_by_vector(self.embed({field: np.asarray(image)[None]}), k)

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
