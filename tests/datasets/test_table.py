"""ParquetDataset and LanceDBDataset: lazy tables as fields, joins that stream, whole batches read at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyrax.datasets.loader import NumpyLoader
from hyrax.datasets.provider import DataProvider
from hyrax.datasets.table import LanceDBDataset, ParquetDataset
from hyrax.errors import DataError
from tests.conftest import request_config


@pytest.fixture
def catalog(tmp_path):
    """A shuffled catalog of objects 1..200 (object 13 missing), with a 2x2 array column."""
    rng = np.random.default_rng(0)
    ids = np.array([i for i in range(1, 201) if i != 13])
    rng.shuffle(ids)
    frame = pd.DataFrame(
        {
            "object_id": ids.astype(str),
            "mag": (20 + ids / 100).astype(np.float32),
            "kind": np.where(ids % 2 == 0, "even", "odd"),
            "stamp": [np.full(4, i, dtype=np.float32) for i in ids],
        }
    )
    path = tmp_path / "catalog.parquet"
    frame.to_parquet(path, row_group_size=50)
    return path


def test_every_column_is_a_field_read_lazily(hyrax_config, catalog):
    dataset = ParquetDataset(hyrax_config.config, catalog)
    assert len(dataset) == 199 and {"object_id", "mag", "kind", "stamp"} <= set(dataset.fields())
    row = int(np.flatnonzero(np.asarray(dataset.column("object_id")) == "42")[0])
    assert dataset.getter("mag")(row) == pytest.approx(20.42, abs=1e-5) and dataset.get_kind(row) == "even"
    assert dataset.getter("stamp")(row).tolist() == [42.0] * 4
    read = dataset.read_rows([row, 0, row], ["mag", "stamp"])
    assert read["mag"][0] == read["mag"][2] == pytest.approx(20.42, abs=1e-5) and read["stamp"].shape == (
        3,
        4,
    )
    assert dataset.metadata([row])["kind"].tolist() == ["even"] and "stamp" not in dataset.metadata([row])
    with pytest.raises(AttributeError, match="Did you mean 'mag'"):
        dataset.get_mga(0)


def test_the_random_access_copy_is_made_once_and_renewed_when_the_file_changes(hyrax_config, catalog):
    from hyrax.datasets.joins import cache_dir

    ParquetDataset(hyrax_config.config, catalog)
    copies = list((cache_dir(hyrax_config.config) / "tables").glob("*.lance"))
    ParquetDataset(hyrax_config.config, catalog)
    assert list((cache_dir(hyrax_config.config) / "tables").glob("*.lance")) == copies and len(copies) == 1
    pd.DataFrame({"object_id": ["a"], "mag": [1.0]}).to_parquet(catalog)
    assert len(ParquetDataset(hyrax_config.config, catalog)) == 1


def test_a_joined_table_streams_and_a_batch_reads_it_once(hyrax_config, catalog, monkeypatch):
    hyrax_config.set_config("data_set.HyraxRandomDataset.size", 200)
    hyrax_config.set_config("data_set.HyraxRandomDataset.shape", [2])
    config = request_config(
        hyrax_config,
        images={"dataset_class": "HyraxRandomDataset", "primary_id_field": "object_id"},
        catalog={"dataset_class": "ParquetDataset", "data_location": str(catalog), "join_field": "object_id"},
    )
    provider = DataProvider(config, "train")
    ids = provider.ids()
    expected = {i: 20 + int(i) / 100 for i in ids if i not in ("13", "0") and int(i) <= 200}
    reads = []
    original = ParquetDataset.read_rows
    monkeypatch.setattr(
        ParquetDataset,
        "read_rows",
        lambda self, rows, fields: reads.append(len(rows)) or original(self, rows, fields),
    )
    batches = list(NumpyLoader(provider, range(200), batch_size=50))
    assert reads == [198]  # in order: the matched rows read ahead at once, not one read per object
    fresh = DataProvider(config, "train")
    reads.clear()
    shuffled = list(NumpyLoader(fresh, np.random.default_rng(1).permutation(200), batch_size=10))
    assert len(reads) == 20 and max(reads) <= 10  # scattered rows: one read per batch

    def by_id(loaded):
        return {
            i: m
            for b in loaded
            for i, m, ok in zip(b["object_id"], b["catalog"]["mag"], b["catalog__matched"], strict=True)
            if ok
        }

    assert by_id(shuffled) == by_id(batches)
    got = {
        object_id: mag
        for batch in batches
        for object_id, mag, matched in zip(
            batch["object_id"], batch["catalog"]["mag"], batch["catalog__matched"], strict=True
        )
        if matched
    }
    assert got.keys() == expected.keys()
    assert all(got[i] == pytest.approx(expected[i], abs=1e-5) for i in got)
    per_row = provider[int(np.flatnonzero(ids == "42")[0])]  # the same values one object at a time
    assert (
        per_row["catalog"]["mag"] == pytest.approx(20.42, abs=1e-5) and per_row["catalog"]["kind"] == "even"
    )
    assert provider.metadata_for(["42"])["kind"].tolist() == ["even"]


def test_batches_from_worker_processes_match(hyrax_config, catalog):
    config = request_config(
        hyrax_config, data={"dataset_class": "ParquetDataset", "data_location": str(catalog)}
    )
    provider = DataProvider(config, "train")
    one = list(NumpyLoader(provider, range(199), batch_size=64, num_workers=0))
    two = list(NumpyLoader(provider, range(199), batch_size=64, num_workers=2))
    assert [b["object_id"].tolist() for b in one] == [b["object_id"].tolist() for b in two]
    assert np.array_equal(
        np.concatenate([b["data"]["stamp"] for b in one]), np.concatenate([b["data"]["stamp"] for b in two])
    )


def test_lancedb_tables_by_name(hyrax_config, tmp_path):
    import lance
    import pyarrow as pa

    database = tmp_path / "db"
    for name in ("stars", "galaxies"):
        lance.write_dataset(
            pa.table({"object_id": [f"{name}1"], "mag": [1.0]}), str(database / f"{name}.lance")
        )
    with pytest.raises(
        DataError, match=r"holds 2 tables \(galaxies, stars\); set data_set.LanceDBDataset.table_name"
    ):
        LanceDBDataset(hyrax_config.config, database)
    hyrax_config.set_config("data_set.LanceDBDataset.table_name", "stars")
    assert LanceDBDataset(hyrax_config.config, database).getter("object_id")(0) == "stars1"
    hyrax_config.set_config("data_set.LanceDBDataset.table_name", "star")
    with pytest.raises(DataError, match="Did you mean 'stars'"):
        LanceDBDataset(hyrax_config.config, database)


def test_lancedb_through_lancedb_connect_with_the_published_keys(hyrax_config, tmp_path):
    """A database given as a URI (as on object storage) is opened with lancedb.connect: connect_kwargs
    and open_table_kwargs pass through (version pins a version of the table), bad ones are named."""
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(tmp_path / "db"))
    table = db.create_table("obs", pa.table({"object_id": ["a", "b"], "flux": [1.0, 2.0]}))
    first = table.version
    table.add(pa.table({"object_id": ["c"], "flux": [3.0]}))
    uri = (tmp_path / "db").as_uri()  # file://..., read as s3://bucket/db would be
    entry = {"dataset_class": "LanceDBDataset", "data_location": uri, "fields": ["flux"]}
    provider = DataProvider(request_config(hyrax_config, obs=entry), "train")
    assert len(provider) == 3 and provider[2]["obs"]["flux"] == 3.0 and provider[2]["object_id"] == "c"

    hyrax_config.set_config("data_set.LanceDBDataset.connect_kwargs", {"storage_options": {}})
    hyrax_config.set_config("data_set.LanceDBDataset.open_table_kwargs", {"version": first})
    dataset = LanceDBDataset(hyrax_config.config, tmp_path / "db")
    assert len(dataset) == 2 and list(dataset.column("object_id")) == ["a", "b"]

    hyrax_config.set_config("data_set.LanceDBDataset.open_table_kwargs", {"versoin": first})
    with pytest.raises(DataError, match="open_table_kwargs.*versoin"):
        LanceDBDataset(hyrax_config.config, tmp_path / "db")
    hyrax_config.set_config("data_set.LanceDBDataset.open_table_kwargs", {})
    hyrax_config.set_config("data_set.LanceDBDataset.table_name", "ob")
    with pytest.raises(DataError, match="no table 'ob'.*Did you mean 'obs'"):
        LanceDBDataset(hyrax_config.config, uri)


def test_a_dataset_with_ids_from_a_getter_joins_a_table(hyrax_config, catalog):
    """The primary ids come from per-row getters (a user's streaming dataset), a batch at a time."""
    from hyrax.datasets import HyraxDataset

    class Streaming(HyraxDataset):
        def __len__(self):
            return 300

        def get_object_id(self, idx):
            return str(idx)

        def get_flux(self, idx):
            return np.full(2, idx, dtype=np.float32)

    config = request_config(
        hyrax_config,
        data={"dataset_class": "Streaming", "primary_id_field": "object_id"},
        catalog={"dataset_class": "ParquetDataset", "data_location": str(catalog), "join_field": "object_id"},
    )
    provider = DataProvider(config, "train")
    matched = provider.rows["catalog"] >= 0
    assert matched.sum() == 199 and not matched[0] and not matched[13] and matched[200] and not matched[201]
    assert provider.metadata_rows([42])["mag"][0] == pytest.approx(20.42, abs=1e-5)


def test_a_broken_parquet_file_is_a_clear_error(hyrax_config, tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"ParquetDataset: cannot read '.*broken.parquet': .*"):
        ParquetDataset(hyrax_config.config, broken)
    with pytest.raises(DataError, match="does not exist"):
        ParquetDataset(hyrax_config.config, tmp_path / "missing.parquet")


def test_tables_are_read_in_the_main_process_only(hyrax_config, catalog):
    """Lance is not fork-safe: a forked process that reads a table is refused with the reason (the
    loader reads tables in the main process and hands the values to its workers, above)."""
    import multiprocessing

    dataset = ParquetDataset(hyrax_config.config, catalog)

    def read_in_child(queue):
        try:
            dataset.getter("mag")(0)
            queue.put("read")
        except DataError as error:
            queue.put(str(error))

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=read_in_child, args=(queue,))
    child.start()
    message = queue.get(timeout=60)
    child.join(60)
    assert "read in a forked process" in message and "num_workers = 0" in message
