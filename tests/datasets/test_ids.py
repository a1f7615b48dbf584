"""Compact id columns, the vectorized id hash and the id index: answers, collisions, memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.ids import IdIndex, StringColumn, arrow_strings, compact, id_hashes


def test_string_column_reads_like_a_numpy_array():
    column = StringColumn(["J1", "J22", "é3", "J4"])
    assert column[1] == "J22" and isinstance(column[1], str) and column[-1] == "J4"
    assert column[[3, 0]].tolist() == ["J4", "J1"] and column[1:3].tolist() == ["J22", "é3"]
    assert column[np.array([True, False, True, False])].tolist() == ["J1", "é3"]
    assert (column == "J22").tolist() == [False, True, False, False]
    assert np.asarray(column).tolist() == list(column) == column.tolist()
    assert len(column) == 4 and column.shape == (4,) and column.dtype.kind == "U"
    assert column.nbytes < 4 * 8 + 16  # bytes plus offsets, not a Python object per string


def test_metadata_tables_keep_strings_compact():
    frame = pd.DataFrame({"object_id": [f"obj{i:06d}" for i in range(1000)], "mag": np.arange(1000.0)})

    class Catalog(HyraxDataset):
        def __init__(self, config, data_location=None):
            super().__init__(config, data_location, frame)

        def __len__(self):
            return 1000

    catalog = Catalog({})
    ids = catalog.column("object_id")
    assert isinstance(ids, StringColumn) and ids.nbytes <= 1000 * 13  # ~9 bytes + 4 of offset each
    assert catalog.getter("object_id")(7) == "obj000007" and catalog.getter("mag")(7) == 7.0
    assert catalog.metadata([5, 2])["object_id"].tolist() == ["obj000005", "obj000002"]
    assert isinstance(compact(np.array([1, 2])), np.ndarray)  # numbers stay numpy
    assert isinstance(compact(np.array(["a", 1], dtype=object)), np.ndarray)  # mixed objects stay as they are


def test_hash_is_the_same_for_an_id_however_it_arrives():
    ids = ["36411452835238206", "J000411.19+020924.0", "é", "x"]
    expected = id_hashes(ids)
    assert np.array_equal(id_hashes(np.array(ids)), expected)
    assert np.array_equal(id_hashes(pa.array(ids, type=pa.large_string())), expected)
    assert np.array_equal(id_hashes(pa.chunked_array([ids[:2], ids[2:]])), expected)
    assert np.array_equal(id_hashes(pd.Series(ids, dtype="str")), expected)
    assert id_hashes(np.array([36411452835238206]))[0] == expected[0]  # integer ids: their decimal text
    assert len(set(expected.tolist())) == 4
    with pytest.raises(ValueError, match="1 object id.*missing"):
        id_hashes(pa.array(["a", None]))


def test_index_finds_rows_and_reports_missing_and_duplicate_ids():
    column = StringColumn([f"id{i}" for i in range(5000)] + ["id7", "id9", "id9"])
    index = IdIndex.build(
        [column.arrow.slice(0, 3000), column.arrow.slice(3000)], column.__getitem__, count=len(column)
    )
    assert index.nbytes == 8 * len(column)  # 8 bytes an object
    assert index.rows_of(["id4999", "nope", "id0"]).tolist() == [4999, -1, 0]
    assert index.rows_of(["id7"]).tolist() == [7]  # the first of a repeated id
    assert index.duplicates() == (2, ["id7", "id9"])


def test_a_shared_hash_prefix_never_gives_a_wrong_row():
    """Keys built by hand so that different ids share a 32-bit prefix: every hit is confirmed."""
    column = StringColumn(["a", "b", "c"])
    prefix = np.uint64(12345) << np.uint64(32)
    keys = np.sort(np.array([prefix | np.uint64(0), prefix | np.uint64(1), prefix | np.uint64(2)]))
    index = IdIndex(keys, column.__getitem__)
    real = IdIndex.build([column.arrow], column.__getitem__, count=3)
    assert real.rows_of(["c", "a"]).tolist() == [2, 0]
    # "b" asked with the shared prefix: only its own row matches
    import hyrax.datasets.ids as ids_module

    original = ids_module.id_hashes
    ids_module.id_hashes = lambda values: np.full(len(arrow_strings(values)), prefix, dtype=np.uint64)
    try:
        assert index.rows_of(["b", "zz"]).tolist() == [1, -1]
        assert index.duplicates() == (0, [])
    finally:
        ids_module.id_hashes = original


@pytest.mark.parametrize("in_memory_ids", [0, 2**21], ids=["bucket sort", "in memory"])
def test_index_written_to_disk_matches_the_one_in_memory(tmp_path, in_memory_ids):
    """The bounded-memory sort (keys spread over bucket files by their top bits) and the in-memory one
    below the threshold give the same keys."""
    from hyrax.datasets.ids import open_id_index, write_id_index

    column = StringColumn([f"J{i:08d}" for i in range(20_000)])
    before = {p.name for p in tmp_path.iterdir()}
    batches = [column.arrow.slice(start, 1500) for start in range(0, 20_000, 1500)]
    path = write_id_index(batches, tmp_path / "ids.npy", count=20_000, in_memory_ids=in_memory_ids)
    on_disk = open_id_index(path, column.__getitem__)
    in_memory = IdIndex.build([column.arrow], column.__getitem__, count=20_000)
    assert isinstance(on_disk.keys, np.memmap) and np.array_equal(on_disk.keys, in_memory.keys)
    assert on_disk.rows_of(["J00019999", "J00000000", "nope"]).tolist() == [19_999, 0, -1]
    assert {p.name for p in tmp_path.iterdir()} - before == {"ids.npy"}  # no scratch left
    with pytest.raises(ValueError, match="announced"):
        write_id_index(batches, tmp_path / "short.npy", count=30_000, in_memory_ids=in_memory_ids)
    assert {p.name for p in tmp_path.iterdir()} - before == {"ids.npy"}  # nothing half-written


def test_a_small_index_is_sorted_in_memory_and_written_as_the_bucket_sort_writes_it(tmp_path, monkeypatch):
    """Issue 31: 1,000 ids make no scratch directory of bucket files (275 opens, ~0.15 s); the file is
    byte for byte the one the bucket sort writes, so indexes written before read as they did."""
    import tempfile

    from hyrax.datasets.ids import IN_MEMORY_IDS, write_id_index

    assert IN_MEMORY_IDS >= 1_000_000
    column = StringColumn([f"obj{i}" for i in range(1_000)])
    before = {p.name for p in tmp_path.iterdir()}
    bucketed = write_id_index([column.arrow], tmp_path / "bucketed.npy", 1_000, in_memory_ids=0).read_bytes()

    def no_scratch(*args, **kwargs):
        raise AssertionError("a scratch directory for 1,000 ids")

    monkeypatch.setattr(tempfile, "mkdtemp", no_scratch)
    path = write_id_index([column.arrow.slice(0, 600), column.arrow.slice(600)], tmp_path / "ids.npy", 1_000)
    assert path.read_bytes() == bucketed
    assert {p.name for p in tmp_path.iterdir()} - before == {"bucketed.npy", "ids.npy"}  # no temporary left


def test_a_look_up_reads_ids_with_vectors_and_a_hash_match_alone_is_never_an_answer(tmp_path, monkeypatch):
    """ResultDataset.lookup_many reads each id's row by its hash and checks the id in the same read: an
    unknown id that shares a known id's hash prefix is refused, not answered with the other's vector."""
    import hyrax.datasets.ids as ids_module
    from hyrax.errors import DataError
    from hyrax.results.store import ResultDataset, ResultWriter

    ids = np.array([f"obj{i}" for i in range(50)])
    with ResultWriter(tmp_path, (3,), "float32") as writer:
        writer.write(ids, np.arange(150, dtype=np.float32).reshape(50, 3))
    results = ResultDataset(data_location=tmp_path)
    assert np.array_equal(results.lookup_many(["obj7", "obj2"]), [[21, 22, 23], [6, 7, 8]])
    real = ids_module.id_hashes
    monkeypatch.setattr(  # "intruder" hashes as obj5 does
        ids_module,
        "id_hashes",
        lambda values: real(["obj5" if v == "intruder" else v for v in arrow_strings(values).to_pylist()]),
    )
    assert results._id_index().candidates(["intruder", "obj9"]).tolist() == [5, 9]
    with pytest.raises(DataError, match=r"intruder are not in the results"):
        results.lookup_many(["obj9", "intruder"])
    assert np.array_equal(results.lookup_many(["obj5"]), [[15, 16, 17]])
