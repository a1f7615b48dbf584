"""``qdrant``: Qdrant in local mode (a directory; tests) or a server (``vector_db.qdrant.url``).
An optional extra (`pip install qdrant-client`)."""

from __future__ import annotations

import uuid

import numpy as np

from hyrax.vector_db.base import VectorIndex

COLLECTION = "hyrax_results"
_NAMESPACE = uuid.UUID("6f1c2a4e-1d1a-4c53-9a3e-2b8e5f0d7c11")
_BATCH = 2000
_SEARCH_BATCH = 256
#: Local mode locks its directory: one client per directory per process, shared by every index object.
_LOCAL_CLIENTS: dict[str, object] = {}


def point_id(object_id: str) -> str:
    """Qdrant ids are integers or UUIDs: a stable UUID per object id (so re-inserting is idempotent)."""
    return str(uuid.uuid5(_NAMESPACE, object_id))


def _local_client(QdrantClient, path: str):
    try:
        return QdrantClient(path=path)
    except RuntimeError as error:
        if "already accessed" not in str(error):
            raise
        from hyrax.vector_db.base import VectorDBError

        raise VectorDBError(
            f"The qdrant index in {path} is open in another process (a save_to_database or a search): Qdrant's "
            f"local mode lets one process at a time use it. Wait for that one to finish, or serve the index "
            f"from a Qdrant server (vector_db.qdrant.url)."
        ) from None


class QdrantIndex(VectorIndex):
    backend = "qdrant"

    def __init__(self, directory, dimension=None, url: str | None = None, **_):
        super().__init__(directory, dimension)
        import warnings

        from hyrax.plugins import optional_import

        QdrantClient = optional_import("qdrant_client", "qdrant", 'vector_db.name = "qdrant"').QdrantClient

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns above 20k points; the server is for those
            if url:
                self.client = QdrantClient(url=url)
            else:
                path = str((self.directory / "qdrant").resolve())
                if path not in _LOCAL_CLIENTS:
                    import atexit

                    _LOCAL_CLIENTS[path] = _local_client(QdrantClient, path)
                    # Close while the interpreter is whole (its own finalizer runs too late and complains).
                    atexit.register(_LOCAL_CLIENTS[path].close)
                self.client = _LOCAL_CLIENTS[path]

    def _exists(self) -> bool:
        return self.client.collection_exists(COLLECTION)

    def count(self) -> int:
        return self.client.count(COLLECTION).count if self._exists() else 0

    def _insert(self, ids, vectors) -> None:
        from qdrant_client.models import Batch, Distance, VectorParams

        if not self._exists():
            self.client.create_collection(
                COLLECTION, vectors_config=VectorParams(size=vectors.shape[1], distance=Distance.EUCLID)
            )
        # Columns, not a PointStruct a point: a server gets one request a batch without a model object per
        # point. In local mode nearly all the time is qdrant-client's own (one SQLite commit a point:
        # ~23 ms each on the shared machine against ~0.2 ms of ours; benchmarks/qdrant.py --profile).
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            self.client.upsert(
                COLLECTION,
                points=Batch(
                    ids=[point_id(i) for i in chunk],
                    vectors=vectors[start : start + _BATCH].tolist(),
                    payloads=[{"object_id": i} for i in chunk],
                ),
            )

    def _search(self, vectors, k):
        from qdrant_client.models import QueryRequest

        ids, distances = [], []
        # One request per _SEARCH_BATCH queries (a round trip each on a server; local mode loops either way)
        for start in range(0, len(vectors), _SEARCH_BATCH):
            requests = [
                QueryRequest(query=query, limit=k, with_payload=True)
                for query in vectors[start : start + _SEARCH_BATCH].tolist()
            ]
            for response in self.client.query_batch_points(COLLECTION, requests=requests):
                ids.append([p.payload["object_id"] for p in response.points])
                distances.append([p.score for p in response.points])
        return np.asarray(ids).astype(str), np.asarray(distances, dtype=np.float32)

    def _get(self, ids):
        points = self.client.retrieve(
            COLLECTION, ids=[point_id(i) for i in ids], with_vectors=True, with_payload=True
        )
        by_id = {p.payload["object_id"]: p.vector for p in points}
        return set(by_id), np.asarray([by_id[i] for i in ids if i in by_id], dtype=np.float32)
