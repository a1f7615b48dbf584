"""Outlier scores: how far each object is from its k-th nearest neighbour in latent space.

Computed in bulk with faiss over the stored vectors (exact below 200,000 objects; an IVF index, trained
on a sample and probed widely, above), or with an isolation forest. Scores are kept in
``<infer run>/lance_db/outliers.lance`` (``object_id``, ``outlier_score``) beside the results table.
Scoring again after objects were appended scores only the new ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hyrax.results.store import ResultDataset, table_path

logger = logging.getLogger(__name__)

EXACT_LIMIT = 200_000


def scores_path(run: Path) -> Path:
    return table_path(run).with_name("outliers.lance")


def knn_index(vectors: np.ndarray, seed: int = 0):
    import faiss

    count, dimension = vectors.shape
    if count <= EXACT_LIMIT:
        index = faiss.IndexFlatL2(dimension)
    else:
        lists = int(4 * np.sqrt(count))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dimension), dimension, lists)
        sample = vectors[
            np.random.default_rng(seed).choice(count, size=min(count, 64 * lists), replace=False)
        ]
        index.train(sample)
        index.nprobe = 16
    index.add(vectors)
    return index


def knn_scores(index, queries: np.ndarray, k: int, batch: int = 65536) -> np.ndarray:
    """Distance of each query (which is in the index) to its k-th neighbour other than itself."""
    scores = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), batch):
        distances, _ = index.search(queries[start : start + batch], k + 1)
        scores[start : start + batch] = np.sqrt(np.maximum(distances[:, k], 0))
    return scores


def score_run(run: Path, method: str = "knn", k: int = 10, seed: int = 0) -> int:
    """Score every object of ``run`` not scored yet; return how many were scored now."""
    import lance
    import pyarrow as pa

    results = ResultDataset(data_location=run)
    ids = results.ids()
    vectors = results[np.arange(len(results))].reshape(len(results), -1).astype(np.float32)
    path = scores_path(run)
    done = set()
    if path.exists():
        done = set(lance.dataset(str(path)).to_table(columns=["object_id"]).column("object_id").to_pylist())
    todo = np.flatnonzero(~np.isin(ids, list(done))) if done else np.arange(len(ids))
    if not len(todo):
        return 0
    if method == "knn":
        import faiss

        faiss.omp_set_num_threads(2)
        index = knn_index(vectors, seed)
        scores = knn_scores(index, vectors[todo], min(k, len(ids) - 1))
    else:
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(random_state=seed).fit(
            vectors[
                np.random.default_rng(seed).choice(len(vectors), min(len(vectors), 100_000), replace=False)
            ]
        )
        scores = (-forest.score_samples(vectors[todo])).astype(np.float32)
    table = pa.table({"object_id": pa.array(ids[todo]), "outlier_score": pa.array(scores)})
    lance.write_dataset(table, str(path), mode="append" if path.exists() else "create")
    logger.info("scored %d objects (%s, k=%d)", len(todo), method, k)
    return len(todo)


def ranked(run: Path, top: int | None = None):
    """The scored objects, most unusual first, as a DataFrame (object_id, outlier_score, rank)."""
    import lance

    frame = lance.dataset(str(scores_path(run))).to_table().to_pandas()
    frame = frame.sort_values("outlier_score", ascending=False, kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.head(top) if top else frame
