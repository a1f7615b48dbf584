"""Every object's nearest neighbours, for a map's static export: exact (faiss, flat) up to
:data:`EXACT_BYTES` of vectors; past that from the run's vector index when ``save_to_database`` made
one (searched a batch at a time: nothing held per object), else a faiss inverted-file index over the
inference vectors (which holds them in memory: 4 bytes a dimension an object).

Map row r is row r of the inference results it was made from (as the map's other readers assume).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from hyrax.visualize.source import MapSource

logger = logging.getLogger(__name__)

#: Up to this many bytes of vectors the neighbours are exact (faiss, flat index).
EXACT_BYTES = 512 * 2**20
#: The inverted-file index past it: lists searched per query.
PROBES = 16


class NeighbourSearch:
    """The ``k`` nearest neighbours (the object itself first) of every row of a map."""

    def __init__(self, config, source: MapSource, k: int):
        self.config, self.source, self.k = config, source, int(k)

    def fill(self, rows: np.ndarray, distances: np.ndarray, batch: int = 4096) -> str:
        """Write each map row's neighbours' rows (-1 past the last found) and distances into these (N, k)
        arrays, a batch at a time; return how they were found ("exact", "index" or "faiss")."""
        from hyrax.progress import Progress
        from hyrax.results.store import ResultDataset

        results = ResultDataset(data_location=self.source.infer_run)
        search, how = self._searcher(results)
        rows[:] = -1
        distances[:] = np.inf
        start = 0
        with Progress(f"export: neighbours ({how})", total=self.source.total) as progress:
            for _, vectors in results.iter_batches(batch):
                vectors = np.ascontiguousarray(vectors.reshape(len(vectors), -1), dtype=np.float32)
                found, far = search(vectors)
                rows[start : start + len(vectors), : found.shape[1]] = found
                distances[start : start + len(vectors), : far.shape[1]] = far
                start += len(vectors)
                progress.update(len(vectors))
        return how

    def _searcher(self, results):
        """A function of a batch of vectors -> (map rows, distances), and its name: exact when the
        vectors fit :data:`EXACT_BYTES`, else the run's vector index, else an inverted-file index."""
        dimension = int(np.prod(results.shape)) if results.shape else 1
        if len(results) * dimension * 4 <= EXACT_BYTES:
            return self._faiss(results), "exact"
        try:
            from hyrax.vector_db.connection import DatabaseConnection

            index = DatabaseConnection(self.config, self.source.infer_run)
        except Exception as error:  # no index (or an unfinished one): faiss over the vectors
            logger.info("export: neighbours by faiss (no usable vector index: %s)", error)
            return self._faiss(results), "faiss"

        def search(vectors):
            found = index.search_by_vector(vectors, self.k)
            ids = [found[i] for i in range(len(vectors))]
            out = np.full((len(vectors), self.k), -1, dtype=np.int64)
            far = np.full((len(vectors), self.k), np.inf, dtype=np.float32)
            for i, near in enumerate(ids):
                out[i, : len(near)] = self.source.rows_of(near)
                far[i, : len(near)] = found.distances[i][: len(near)]
            return out, far

        return search, "index"

    def _faiss(self, results):
        import faiss

        count = len(results)
        dimension = int(np.prod(results.shape)) if results.shape else 1
        if count * dimension * 4 <= EXACT_BYTES:
            index = faiss.IndexFlatL2(dimension)
        else:
            lists = int(4 * math.sqrt(count))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dimension), dimension, lists)
            sample = np.sort(np.random.default_rng(0).choice(count, min(count, 64 * lists), replace=False))
            index.train(np.ascontiguousarray(results.take(sample)[1].reshape(len(sample), -1), np.float32))
            index.nprobe = PROBES
        for _, vectors in results.iter_batches(65536):
            index.add(np.ascontiguousarray(vectors.reshape(len(vectors), -1), dtype=np.float32))
        k = min(self.k, count)

        def search(vectors):
            squared, found = index.search(vectors, k)
            return found.astype(np.int64), np.sqrt(np.maximum(squared, 0)).astype(np.float32)

        return search
