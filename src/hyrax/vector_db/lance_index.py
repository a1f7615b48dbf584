"""``lance``: the default backend. It indexes the inference results table in place (no second copy).

Small tables are searched exactly. Past ``vector_db.lance.index_threshold`` rows an IVF-PQ index is
built, and each query re-ranks ``refine_factor * k`` candidates by their exact distance (LanceDB's
refine), which keeps recall high while the full vectors stay on disk: 100M 64-d vectors (25.6 GB) need
only the compressed codes (16 B each) in memory.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hyrax.results.store import ResultDataset, arrow_table, table_path
from hyrax.vector_db.base import VectorIndex


class LanceIndex(VectorIndex):
    backend = "lance"

    def __init__(
        self, directory, dimension=None, results_dir: Path | None = None, settings: dict | None = None
    ):
        super().__init__(directory, dimension)
        settings = settings or {}
        self.threshold = int(settings.get("index_threshold", 100_000))
        self.nprobes = int(settings.get("nprobes", 10))
        self.refine_factor = int(settings.get("refine_factor", 5))
        self.path = table_path(results_dir) if results_dir is not None else self.directory / "vectors.lance"
        if self.path.exists() and self.dimension is None:
            self.dimension = ResultDataset(data_location=self.path).shape[0]
            self._mark()

    def _dataset(self):
        import lance

        return lance.dataset(str(self.path))

    def count(self) -> int:
        return self._dataset().count_rows() if self.path.exists() else 0

    def _insert(self, ids, vectors) -> None:
        import lance

        from hyrax.results.store import _schema

        table = arrow_table(ids, vectors, _schema((vectors.shape[1],), "float32"))
        if not self.path.exists():
            lance.write_dataset(table, str(self.path))
            return
        # Idempotent: rows whose id is already there are left alone.
        self._dataset().merge_insert("object_id").when_not_matched_insert_all().execute(table)

    def build(self) -> str:
        """Create the ANN index when the table is large enough; return what was done."""
        dataset = self._dataset()
        count = dataset.count_rows()
        if count < self.threshold:
            return f"exact search ({count} rows < vector_db.lance.index_threshold)"
        partitions = max(16, int(math.sqrt(count)))
        sub_vectors = max(1, self.dimension // 4) if self.dimension % 4 == 0 else 1
        dataset.create_index(
            "data", index_type="IVF_PQ", num_partitions=partitions, num_sub_vectors=sub_vectors, replace=True
        )
        return (
            f"IVF_PQ index ({partitions} partitions, {sub_vectors} sub-vectors, refine x{self.refine_factor})"
        )

    def _search(self, vectors, k):
        dataset = self._dataset()
        indexed = _has_vector_index(dataset)
        ids = np.empty((len(vectors), k), dtype=object)
        distances = np.empty((len(vectors), k), dtype=np.float32)
        for row, query in enumerate(vectors):
            nearest = {"column": "data", "q": query, "k": k}
            if indexed:
                nearest.update(nprobes=self.nprobes, refine_factor=self.refine_factor)
            else:
                nearest["use_index"] = False
            table = dataset.to_table(nearest=nearest, columns=["object_id", "_distance"])
            ids[row] = table.column("object_id").to_numpy(zero_copy_only=False)
            distances[row] = np.sqrt(np.maximum(table.column("_distance").to_numpy(), 0))
        return ids.astype(str), distances

    def _get(self, ids):
        results = ResultDataset(data_location=self.path)
        found = set(
            results._lance.to_table(columns=["object_id"], filter=_in_filter(ids))
            .column("object_id")
            .to_pylist()
        )
        return found, results.lookup_many([i for i in ids if i in found]) if found else np.empty(
            (0, self.dimension)
        )


def _in_filter(ids) -> str:
    return "object_id IN (" + ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids) + ")"


def _has_vector_index(dataset) -> bool:
    return any("data" in list(index.field_names) for index in dataset.describe_indices())
