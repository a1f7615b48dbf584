"""Every vector-index backend passes one protocol suite; search by image; outlier scores."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax.vector_db.base import VectorDBError
from hyrax.vector_db.chroma_index import ChromaIndex
from hyrax.vector_db.lance_index import LanceIndex
from hyrax.vector_db.qdrant_index import QdrantIndex

BACKENDS = {"lance": LanceIndex, "chromadb": ChromaIndex, "qdrant": QdrantIndex}


def clustered(count=300, dimension=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dimension)) * 10
    return np.char.add("id", np.arange(count).astype(str)), (
        centres[np.arange(count) % 5] + rng.normal(size=(count, dimension))
    ).astype(np.float32)


@pytest.fixture(params=sorted(BACKENDS))
def index(request, tmp_path):
    return BACKENDS[request.param](tmp_path / "db")


def test_protocol(index):
    ids, vectors = clustered()
    index.insert(ids[:200], vectors[:200])
    index.insert(ids[100:], vectors[100:])  # overlaps: idempotent
    index.insert(ids, vectors)
    assert index.count() == 300
    found, distances = index.search_by_id(["id7", "id42"], k=5)
    assert found.shape == (2, 5) and found[0, 0] == "id7" and found[1, 0] == "id42"
    assert distances[0, 0] == pytest.approx(0, abs=1e-3) and np.all(np.diff(distances, axis=1) >= -1e-4)
    exact = np.argsort(np.linalg.norm(vectors - vectors[7], axis=1))[:5]
    assert set(found[0]) == set(ids[exact])
    assert np.allclose(index.get_vectors(["id3", "id1"]), vectors[[3, 1]], atol=1e-5)
    by_vector, _ = index.search(vectors[11] + 0.01, k=1)
    assert by_vector[0, 0] == "id11"


def test_bad_queries(index, tmp_path):
    with pytest.raises(VectorDBError, match="is empty: run `hyrax save_to_database` first"):
        index.search(np.zeros(8), k=1)
    ids, vectors = clustered(20)
    index.insert(ids, vectors)
    with pytest.raises(VectorDBError, match=r"Object id\(s\) nope are not in the"):
        index.search_by_id(["nope"])
    with pytest.raises(VectorDBError, match="have 3 dimensions; the index holds 8-dimensional"):
        index.search(np.zeros(3))
    with pytest.raises(VectorDBError, match="k = 50, but the index holds 20 objects"):
        index.search(np.zeros(8), k=50)
    other = "qdrant" if index.backend != "qdrant" else "lance"
    with pytest.raises(VectorDBError, match=f"holds a {index.backend} index, not {other}"):
        BACKENDS[other](index.directory)


def test_searches_count_the_index_again_only_when_k_would_not_fit(index, monkeypatch):
    """chromadb counts its rows at each count() (~10 ms at 100,000): searches reuse the count their k was
    checked against, and count again after an insert and before refusing a k."""
    ids, vectors = clustered(30)
    index.insert(ids[:20], vectors[:20])
    counted = []
    real_count = type(index).count
    monkeypatch.setattr(type(index), "count", lambda self: counted.append(1) or real_count(self))
    for i in range(5):
        index.search_by_id([f"id{i}"], k=5)
    assert len(counted) == 1
    index.insert(ids[20:30], vectors[20:30])
    assert index.search(vectors[0], k=25)[0].shape == (1, 25)  # a k over the known 20: counted again
    assert len(counted) == 2
    with pytest.raises(VectorDBError, match="k = 31, but the index holds 30 objects"):
        index.search(vectors[0], k=31)


def delete_through_the_backend(index, ids: list[str]) -> None:
    """Vectors lost after a save, removed with the backend's own API (nothing of Hyrax's is faked)."""
    if index.backend == "chromadb":
        index.collection.delete(ids=ids)
    else:
        from qdrant_client.models import PointIdsList

        from hyrax.vector_db.qdrant_index import COLLECTION, point_id

        index.client.delete(COLLECTION, points_selector=PointIdsList(points=[point_id(i) for i in ids]))


@pytest.mark.parametrize("backend", ["chromadb", "qdrant"])
def test_an_index_that_says_complete_holds_every_vector(backend, tmp_path):
    """An index that says complete holds every vector: is_complete checks the backend's count against
    the objects the save recorded, and mark_complete refuses a short index. Vectors lost after the save
    are deleted here with the backend's own API; nothing of Hyrax's is faked."""
    ids, vectors = clustered(100)
    index = BACKENDS[backend](tmp_path / "db")
    index.mark_building(100)
    index.insert(ids, vectors)
    index.mark_complete(100)
    assert index.is_complete
    delete_through_the_backend(index, ids[:16].tolist())
    assert index.count() == 84 and not index.is_complete
    index.mark_building(100)  # a save that inserted the 100 and still finds 84 (a write lost)
    with pytest.raises(
        VectorDBError, match="holds 84 vectors after inserting 100: it stays marked unfinished"
    ):
        index.mark_complete(100)
    assert not index.is_complete
    index.insert(ids, vectors)  # what save_to_database run again does: every vector inserted again
    index.mark_complete(100)
    assert index.is_complete and index.count() == 100


def test_lance_ivf_pq_with_refine_keeps_recall(tmp_path):
    ids, vectors = clustered(4000, 16)
    index = LanceIndex(tmp_path / "db", settings={"index_threshold": 1000})
    index.insert(ids, vectors)
    assert index.build().startswith("IVF_PQ")
    queries = vectors[:50]
    found, _ = index.search(queries, k=10)
    truth = np.argsort(((vectors[None] - queries[:, None]) ** 2).sum(-1), axis=1)[:, :10]
    recall = np.mean([len(set(f) & set(ids[t])) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_lance_index_is_built_a_segment_at_a_time(tmp_path, monkeypatch):
    """Bounded memory: one index segment per few fragments, one trained model, merged into one index
    (a query searches each segment apart); queries are held-out points, not copies of indexed ones."""
    import lance

    from hyrax.vector_db import lance_index

    ids, vectors = clustered(6100, 16)
    held_out, vectors, ids = vectors[6000:], vectors[:6000], ids[:6000]
    index = LanceIndex(tmp_path / "db", settings={"index_threshold": 1000})
    for start in range(0, 6000, 1000):  # six fragments
        index.insert(ids[start : start + 1000], vectors[start : start + 1000])
    monkeypatch.setattr(lance_index, "SEGMENT_ROWS", 2000)
    assert "3 segment(s)" in index.build()
    (described,) = [
        i for i in lance.dataset(str(index.path)).describe_indices() if "data" in list(i.field_names)
    ]
    assert len(described.segments) == 1 and described.num_rows_indexed == 6000  # merged
    indices = {entry.name for entry in (index.path / "_indices").iterdir()}
    assert indices == {str(described.segments[0].uuid)}  # the segments' own files removed
    found, _ = index.search(held_out, k=10)
    truth = np.argsort(((vectors[None] - held_out[:, None]) ** 2).sum(-1), axis=1)[:, :10]
    recall = np.mean([len(set(f) & set(ids[t])) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95
    assert "3 segment(s)" in index.build()  # built again: replaces the index


def test_lance_index_over_results_of_several_dimensions(tmp_path):
    """Results of shape (2, 3) per object (HyraxLoopback's output, as published) are 6-d vectors."""
    from hyrax.results.store import ResultWriter

    ids, vectors = clustered(50, dimension=6)
    with ResultWriter(tmp_path / "run", (2, 3), "float32") as writer:
        writer.write(ids, vectors.reshape(50, 2, 3))
    index = LanceIndex(tmp_path / "db", results_dir=tmp_path / "run")
    assert index.dimension == 6
    found, distances = index.search_by_id(["id4"], k=2)
    assert found[0, 0] == "id4" and distances[0, 0] == pytest.approx(0, abs=1e-4)
