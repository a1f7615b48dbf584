"""``chromadb``: for users coming from Hyrax's ChromaDB index. An optional extra (`pip install chromadb`)."""

from __future__ import annotations

import numpy as np

from hyrax.vector_db.base import VectorIndex

COLLECTION = "hyrax_results"
_BATCH = 5000


class ChromaIndex(VectorIndex):
    backend = "chromadb"

    def __init__(self, directory, dimension=None, **_):
        super().__init__(directory, dimension)
        from hyrax.plugins import optional_import

        chromadb = optional_import("chromadb", "chromadb", 'vector_db.name = "chromadb"')

        self.client = chromadb.PersistentClient(path=str(self.directory / "chroma"))
        self.collection = self.client.get_or_create_collection(COLLECTION, metadata={"hnsw:space": "l2"})

    def count(self) -> int:
        return self.collection.count()

    def _insert(self, ids, vectors) -> None:
        for start in range(0, len(ids), _BATCH):  # upsert: inserting an id twice keeps one row
            self.collection.upsert(
                ids=ids[start : start + _BATCH].tolist(), embeddings=vectors[start : start + _BATCH]
            )

    def _search(self, vectors, k):
        found = self.collection.query(query_embeddings=vectors, n_results=k, include=["distances"])
        return np.asarray(found["ids"]).astype(str), np.sqrt(
            np.maximum(np.asarray(found["distances"], dtype=np.float32), 0)
        )

    def _get(self, ids):
        found = self.collection.get(ids=ids, include=["embeddings"])
        by_id = dict(zip(found["ids"], found["embeddings"], strict=True))
        return set(by_id), np.asarray([by_id[i] for i in ids if i in by_id], dtype=np.float32)
