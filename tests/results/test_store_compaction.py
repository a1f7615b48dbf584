"""Results tables are compacted when closed: few fragments of bounded size, rows in their order."""

from __future__ import annotations

import lance
import numpy as np

from hyrax.results import store
from hyrax.results.store import ResultDataset, ResultWriter


def test_closing_compacts_into_bounded_fragments_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "CHUNK_ROWS", 1024)
    monkeypatch.setattr(store, "COMPACT_ROWS", 8192)
    ids = np.char.add("obj", np.arange(60_000).astype(str))
    data = np.arange(60_000 * 4, dtype=np.float32).reshape(60_000, 4)
    with ResultWriter(tmp_path, (4,), "float32") as writer:
        for start in range(0, 60_000, 1000):
            writer.write(ids[start : start + 1000], data[start : start + 1000])
    table = lance.dataset(str(store.table_path(tmp_path)))
    sizes = [fragment.count_rows() for fragment in table.get_fragments()]
    assert len(sizes) <= 8 and max(sizes) <= 2 * 8192 and sum(sizes) == 60_000
    results = ResultDataset(data_location=tmp_path)
    assert results.ids().tolist() == ids.tolist() and np.array_equal(results[np.arange(60_000)], data)
    assert results.rows_of(["obj59999", "obj0", "nope"]).tolist() == [59_999, 0, -1]
    assert len(table.versions()) == 1 or all(v["version"] >= table.version - 1 for v in table.versions())


def test_rows_appended_after_the_id_index_are_still_found(tmp_path):
    """A resumed run not yet closed: its id index covers the first rows, the rest are read."""
    ids = np.char.add("obj", np.arange(3000).astype(str))
    data = np.zeros((3000, 2), dtype=np.float32)
    with ResultWriter(tmp_path, (2,), "float32") as writer:
        writer.write(ids[:2000], data[:2000])
    writer = ResultWriter(tmp_path, (2,), "float32", resume=True)
    writer.write(ids[2000:], data[2000:])
    writer.flush()  # committed, not closed: the id index still covers 2,000 rows
    assert np.load(store.id_index_path(store.table_path(tmp_path)), mmap_mode="r").shape == (2000,)
    results = ResultDataset(data_location=tmp_path)
    assert results.rows_of(["obj2999", "obj5", "nope"]).tolist() == [2999, 5, -1]
    assert results.lookup("obj2500").shape == (2,)
    writer.close()
    assert ResultDataset(data_location=tmp_path).rows_of(["obj2999"]).tolist() == [2999]


def test_a_table_written_by_the_published_hyrax_is_read_row_by_row(tmp_path):
    """Published Hyrax stamps tensor_shape/tensor_dtype (not shape/dtype): each row stays one result,
    never values of several rows read as one (a silent wrong answer before)."""
    import json

    import pyarrow as pa

    vectors = np.arange(5 * 6, dtype=np.float32).reshape(5, 2, 3)
    schema = pa.schema(
        [pa.field("object_id", pa.string()), pa.field("data", pa.list_(pa.float32(), 6))],
        metadata={b"tensor_shape": json.dumps([2, 3]).encode(), b"tensor_dtype": b"float32"},
    )
    table = pa.table(
        {"object_id": [f"o{i}" for i in range(5)], "data": list(vectors.reshape(5, 6))}, schema=schema
    )
    lance.write_dataset(table, str(store.table_path(tmp_path)))
    results = ResultDataset(data_location=tmp_path)
    assert results.shape == (2, 3) and len(results) == 5
    assert np.array_equal(results.lookup("o3"), vectors[3]) and np.array_equal(results[4], vectors[4])
    # No metadata at all: the fixed-size list gives one row per result.
    bare = tmp_path / "bare"
    lance.write_dataset(table.replace_schema_metadata(None), str(store.table_path(bare)))
    assert ResultDataset(data_location=bare).shape == (6,)
    assert np.array_equal(ResultDataset(data_location=bare)[2], vectors[2].ravel())
