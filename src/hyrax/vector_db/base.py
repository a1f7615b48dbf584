"""The vector-index protocol: insert (idempotent), search by vector or id, get vectors, count.

Every backend answers in the same shapes: ``search`` returns ``(ids, distances)``, each (queries, k),
Euclidean distances, nearest first. The checks that make bad input a clear error live here, once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hyrax.errors import HyraxError

MARKER = "hyrax_vector_db.json"


class VectorDBError(HyraxError, ValueError):
    """A query or index problem: unknown id, wrong dimension, empty index, k too large, wrong backend."""


class VectorIndex:
    """Base class of the backends; see the module documentation."""

    backend: ClassVar[str] = ""

    def __init__(self, directory: str | Path, dimension: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / MARKER
        if marker.is_file():
            made = json.loads(marker.read_text())
            if made.get("backend") != self.backend:
                raise VectorDBError(
                    f"{self.directory} holds a {made.get('backend')} index, not {self.backend}: set vector_db.name = "
                    f'"{made.get("backend")}", or use another vector_db_dir.'
                )
            dimension = dimension or made.get("dimension")
        self.dimension = dimension
        # The index's count, taken once (held()): chromadb counts its rows at each call (~10 ms at 100,000
        # objects, more than a search), so a search counts again only when its k would not fit.
        self._counted: int | None = None

    def _marker(self) -> dict:
        marker = self.directory / MARKER
        return json.loads(marker.read_text()) if marker.is_file() else {}

    def _mark(self, **state: Any) -> None:
        from hyrax.results.run_dir import write_text_atomic

        made = {**self._marker(), "backend": self.backend, "dimension": self.dimension, **state}
        write_text_atomic(self.directory / MARKER, json.dumps(made))

    # -- completeness: an interrupted save_to_database is never searched as if whole ---------------
    def mark_building(self, objects: int, made_from: dict | None = None) -> None:
        """A save of ``objects`` vectors starts: until :meth:`mark_complete`, the index is partial.
        ``made_from``: the results it indexes (see :meth:`check_made_from`)."""
        self._mark(complete=False, objects=int(objects), **({"made_from": made_from} if made_from else {}))

    def check_made_from(self, run: Path, doing: str) -> None:
        """Refuse to add to, or search, an index built from other results than the infer run ``run``'s
        as they are now: its neighbours would be another run's, or mixed with it. An index of an
        earlier release, with no record, passes."""
        from hyrax.results.store import moved_on

        recorded = self._marker().get("made_from")
        if not recorded or not self.held():
            return
        if recorded.get("infer_run") != str(Path(run).resolve()):
            raise VectorDBError(
                f"The {self.backend} index in {self.directory} was built from the results of "
                f"{recorded.get('infer_run')}, not of {Path(run).resolve()}; {doing} would mix the two. "
                f"Use the run it was built from, or another vector_db_dir for this one."
            )
        changed = moved_on(recorded, run)
        if changed:
            raise VectorDBError(
                f"The {self.backend} index in {self.directory} was built from another version of the results "
                f"of {Path(run).resolve()} ({', '.join(changed)}). Delete {self.directory} and run "
                f"save_to_database again."
            )

    def mark_complete(self, objects: int) -> None:
        """Say the save is whole, once the backend holds exactly ``objects`` vectors (counted by the
        backend itself, after every insert returned). A short or long index stays unfinished: an index
        that says complete holds every vector."""
        held = self.count()
        if held != objects:
            raise VectorDBError(
                f"The {self.backend} index in {self.directory} holds {held:,} vectors after inserting "
                f"{objects:,}: it stays marked unfinished. Run save_to_database again (it inserts every "
                f"vector again); if it still differs, delete {self.directory} and run it again."
            )
        self._mark(complete=True, objects=int(objects))

    @property
    def is_complete(self) -> bool:
        """False while a save is unfinished, or when the backend holds another number of vectors than the
        save recorded (vectors lost since: checked, not trusted). An index of an earlier release, with no
        record, counts as complete."""
        marker = self._marker()
        if marker.get("complete", True) is False:
            return False
        objects = marker.get("objects")
        if objects is None:
            return True
        self._counted = self.count()  # counted now, never a count from before
        return self._counted == objects

    # -- the protocol ----------------------------------------------------------------------------
    def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = self._vectors(vectors)
        if self.dimension is None:
            self.dimension = vectors.shape[1]
            self._mark()
        self._counted = None
        self._insert(np.asarray(ids).astype(str), vectors)

    def search(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        vectors = self._vectors(vectors)
        self._check_k(k)
        return self._search(vectors, int(k))

    def search_by_id(self, ids, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of objects already in the index (each finds itself first)."""
        return self.search(self.get_vectors(ids), k)

    def get_vectors(self, ids) -> np.ndarray:
        ids = [str(i) for i in np.atleast_1d(ids)]
        found, vectors = self._get(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise VectorDBError(
                f"Object id(s) {', '.join(missing[:5])} are not in the {self.backend} index ({self.count()} objects)."
            )
        return vectors

    def count(self) -> int:
        raise NotImplementedError

    def held(self) -> int:
        """:meth:`count`, counted once until the next insert or :attr:`is_complete` (which counts afresh)."""
        if self._counted is None:
            self._counted = self.count()
        return self._counted

    # -- checks ----------------------------------------------------------------------------------
    def _vectors(self, vectors: Any) -> np.ndarray:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        vectors = vectors.reshape(len(vectors), -1)
        if self.dimension is not None and vectors.shape[1] != self.dimension:
            raise VectorDBError(
                f"Query vectors have {vectors.shape[1]} dimensions; the index holds {self.dimension}-dimensional vectors."
            )
        return np.ascontiguousarray(vectors)

    def _check_k(self, k: int) -> None:
        count = self.held()
        if not 1 <= k <= count:  # counted again before any refusal: never a stale one
            count = self._counted = self.count()
        if count == 0:
            raise VectorDBError(
                f"The {self.backend} index in {self.directory} is empty: run `hyrax save_to_database` first."
            )
        if not 1 <= k <= count:
            raise VectorDBError(
                f"k = {k}, but the index holds {count} objects: ask for 1 to {count} neighbours."
            )

    # -- backends implement -------------------------------------------------------------------------
    def _insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _get(self, ids: list[str]) -> tuple[set[str], np.ndarray]:
        """(the ids found, their vectors in the order asked, for the found ones)."""
        raise NotImplementedError
