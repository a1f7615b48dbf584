"""HATS catalogs streamed through LSDB (issue 28, item 2): LSDBStreamDataset as a 0.13 user configures it,
in train_stream / infer_stream sessions; fixed-size batches across ragged partitions, every row once in
one pass, a cone reading only its partitions; and the random-access copy's size limit and eviction. On
the real CRTS transients (tests/data/crts_transients) written as a HATS catalog at test time.

The sessions, the nested light curves and the copies are -m slow:
``python -m pytest tests/datasets/test_lsdb_stream.py -m slow``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyrax import Hyrax
from hyrax.errors import ConfigError, DataError

pytest.importorskip("lsdb")

MODEL = "tests.datasets.lsdb_models.ColumnEncoder"
CONE = [200.0, 20.0, 20 * 3600.0]  # ra, dec (degrees), radius (arcseconds)


@pytest.fixture(scope="module")
def objects():
    from tests.conftest import REAL_DATA

    return pd.read_csv(REAL_DATA / "crts_transients" / "objects.csv", dtype={"object_id": str})


@pytest.fixture(scope="module")
def crts_catalog(objects, tmp_path_factory):
    """The 500 CRTS transients as a HATS catalog of 20 partitions (orders 0 to 5), written with LSDB."""
    import lsdb

    location = tmp_path_factory.mktemp("hats") / "crts"
    catalog = lsdb.from_dataframe(
        objects, catalog_name="crts", ra_column="ra", dec_column="dec", lowest_order=0, highest_order=5,
        partition_rows=60,
    )  # fmt: skip
    catalog.write_catalog(location)
    return location


@pytest.fixture
def config(tmp_path):
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("data_set.cache_dir", str(tmp_path / "cache"))
    h.set_config("data_loader.batch_size", 64)
    return h


def stream_of(h, location, **settings):
    from hyrax.datasets.lsdb_stream import LSDBStreamDataset

    for key, value in settings.items():
        h.set_config(f"data_set.LSDBStreamDataset.{key}", value)
    return LSDBStreamDataset(h.config, str(location))


def in_cone(objects, ra, dec, radius_arcsec):
    ra0, dec0, r1, d1 = map(np.radians, (ra, dec, objects.ra.to_numpy(), objects.dec.to_numpy()))
    cos = np.sin(dec0) * np.sin(d1) + np.cos(dec0) * np.cos(d1) * np.cos(r1 - ra0)
    return objects[np.degrees(np.arccos(np.clip(cos, -1, 1))) * 3600 <= radius_arcsec]


# -- as published ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_registered_catalog_in_train_stream_and_infer_stream_sessions_as_published(
    config, crts_catalog, objects
):
    """A 0.13 notebook: register_catalog, a data request naming lsdb://<name>, train on the infinite stream
    (break out), then infer over one pass: every object once, the results the model's."""
    import lsdb

    from hyrax.datasets import LSDBStreamDataset

    h = config
    location = LSDBStreamDataset.register_catalog("crts", lsdb.open_catalog(crts_catalog))
    assert location == "lsdb://crts" and "crts" in LSDBStreamDataset.registered_catalogs()
    h.set_config("model.name", MODEL)
    h.set_config("data_set.LSDBStreamDataset.stream_type", "infinite")
    h.set_config("data_set.LSDBStreamDataset.seed", 7)
    request = {
        "dataset_class": "LSDBStreamDataset",
        "data_location": location,
        "primary_id_field": "object_id",
    }
    h.config["data_request"] = {"train_stream": {"data": {**request, "fields": ["ra", "dec"]}}}
    losses = []
    with h.train_stream() as session:
        for batch, metrics in session:
            assert len(batch["object_id"]) == 64  # an infinite stream: every batch full
            losses.append(metrics["loss"])
            if len(losses) == 12:  # 768 rows: past one pass of 500
                break
    weights = session.weights_file
    assert weights.is_file() and all(np.isfinite(losses))

    h.set_config("data_set.LSDBStreamDataset.stream_type", "catalog")
    h.set_config("infer_stream.model_weights_file", str(weights))
    h.config["data_request"] = {"infer_stream": {"data": {**request, "fields": ["ra", "dec"]}}}
    handed = {}
    with h.infer_stream() as inference:
        for batch, results in inference:
            assert results.shape == (len(batch["object_id"]), 2)
            handed.update(zip(batch["object_id"], results, strict=True))
    assert sorted(handed) == sorted(objects.object_id)  # one pass: every object, once
    LSDBStreamDataset.unregister_catalog("crts")
    assert "crts" not in LSDBStreamDataset.registered_catalogs()


def test_iterated_as_published_lists_of_row_dicts_of_batch_size(config, crts_catalog, objects):
    from hyrax.datasets.lsdb_stream_dataset import LSDBStreamDataset  # the published import path

    config.set_config("data_set.LSDBStreamDataset.seed", 1)
    dataset = LSDBStreamDataset(config.config, str(crts_catalog))
    first = dataset.peek_sample()
    batches = list(dataset)
    assert [len(b) for b in batches] == [64] * 7 + [52]
    assert batches[0][0] == first and set(first) == {"object_id", "crts_id", "ra", "dec", "label"}
    assert sorted(row["object_id"] for b in batches for row in b) == sorted(objects.object_id)
    with pytest.raises(TypeError, match="stream and has no length"):
        len(dataset)


# -- ours ------------------------------------------------------------------------------------------


def test_one_pass_fixed_size_batches_across_partitions_every_row_once_bounded_and_seeded(
    config, crts_catalog, objects
):
    dataset = stream_of(config, crts_catalog, partitions_per_chunk=3, seed=5)
    partition_rows = [len(part.compute()) for part in dataset.catalog.to_delayed()]
    assert dataset.catalog.npartitions == 20 and len(set(partition_rows)) > 5  # ragged
    frames = list(dataset.frame_batches())
    assert [len(f) for f in frames] == [64] * 7 + [52]
    ids = [i for f in frames for i in f.object_id]
    assert sorted(ids) == sorted(objects.object_id)  # every row exactly once
    # held at once: the chunk being cut and fewer than a batch carried (LSDB computes one more ahead)
    assert dataset.peak_rows_held <= 3 * max(partition_rows) + 63
    again = stream_of(config, crts_catalog, partitions_per_chunk=3, seed=5)
    assert [i for f in again.frame_batches() for i in f.object_id] == ids  # seeded: the same order
    other = stream_of(config, crts_catalog, partitions_per_chunk=3, seed=6)
    assert [i for f in other.frame_batches() for i in f.object_id] != ids


def test_a_consumer_that_stops_early_loses_nothing_and_infinite_keeps_going(config, crts_catalog, objects):
    dataset = stream_of(config, crts_catalog, seed=2)
    batches = dataset.frame_batches()
    first = [next(batches) for _ in range(3)]
    batches.close()  # the loop broke: rows read ahead are kept for the next iteration
    rest = list(dataset.frame_batches())
    ids = [i for f in first + rest for i in f.object_id]
    assert sorted(ids) == sorted(objects.object_id)
    endless = stream_of(config, crts_catalog, stream_type="infinite", seed=2).frame_batches()
    assert [len(next(endless)) for _ in range(20)] == [64] * 20  # 1280 rows from 500: resampled


def test_a_cone_reads_only_the_partitions_it_needs(config, crts_catalog, objects):
    whole = stream_of(config, crts_catalog)
    cone = stream_of(config, crts_catalog, cone=CONE)
    assert 0 < cone.catalog.npartitions < whole.catalog.npartitions
    expected = in_cone(objects, *CONE)
    assert 0 < len(expected) < len(objects)
    got = [i for f in cone.frame_batches() for i in f.object_id]
    assert sorted(got) == sorted(expected.object_id)
    with pytest.raises(
        ConfigError, match=r"data_set.LSDBStreamDataset.cone = \[1, 2\]: give \[ra, dec, radius"
    ):
        stream_of(config, crts_catalog, cone=[1, 2])


def test_errors_name_the_key_or_the_registered_catalogs(config, crts_catalog):
    from hyrax.datasets.lsdb_stream import LSDBStreamDataset

    with pytest.raises(DataError, match=r"no catalog is registered as 'crst'.*register_catalog\('crst'"):
        LSDBStreamDataset(config.config, "lsdb://crst")
    with pytest.raises(ConfigError, match=r"stream_type.*'catalog'.*'infinite'"):
        config.set_config("data_set.LSDBStreamDataset.stream_type", "endless")


@pytest.mark.slow
def test_nested_light_curves_batched_padded_with_a_mask(config, objects, tmp_path):
    """A nested column (the CRTS light curves) as <column>.<subcolumn> (and the published <column>_<subcolumn>)."""
    import lsdb

    from hyrax.datasets.lsdb_stream import LSDBStreamDataset
    from tests.conftest import REAL_DATA
    from tests.datasets.test_catalogs import crts_frame

    frame = crts_frame(REAL_DATA).reset_index(drop=True).iloc[:40]
    catalog = lsdb.from_dataframe(frame, catalog_name="lc", ra_column="ra", dec_column="dec")
    location = LSDBStreamDataset.register_catalog("crts_lc", catalog)
    dataset = LSDBStreamDataset(config.config, location)
    assert {"lc.mag", "lc.mjd"} <= set(dataset.fields())
    batch = next(dataset.frame_batches())
    columns = dataset.columns_of(batch, ["lc.mag", "lc_mjd"])
    flat = pd.read_parquet(REAL_DATA / "crts_transients" / "lightcurves.parquet")
    for row, object_id in enumerate(batch.object_id):
        mags = flat[flat.object_id == object_id].mag.to_numpy()
        assert columns["lc.mag_mask"][row].sum() == len(mags)
        np.testing.assert_array_equal(
            np.sort(columns["lc.mag"][row][columns["lc.mag_mask"][row]]), np.sort(mags)
        )
    assert columns["lc_mjd"].shape == columns["lc_mjd_mask"].shape
    LSDBStreamDataset.unregister_catalog("crts_lc")


# -- the random-access copy: a region, a size limit, eviction ----------------------------------------


@pytest.mark.slow
def test_hats_copy_of_a_cone_and_the_least_recently_used_copy_evicted(config, crts_catalog, objects):
    from hyrax.datasets import table_cache
    from hyrax.datasets.table import _HELD, HyraxHATSDataset

    h = config
    h.set_config("data_set.HyraxHATSDataset.cone", CONE)
    coned = HyraxHATSDataset(h.config, crts_catalog)
    expected = in_cone(objects, *CONE)
    assert len(coned) == len(expected)
    assert sorted(coned.read_rows(np.arange(len(coned)), ["object_id"])["object_id"]) == sorted(
        expected.object_id
    )
    cache = h.config["data_set"]["cache_dir"]
    from pathlib import Path

    tables = Path(cache) / "tables"
    (first,) = table_cache.copies(tables)
    _HELD.pop(first).close()  # this process is done with it (a finished run)
    size = table_cache.size_of(first)
    # room for one copy of this size, not two: the next copy evicts the least recently used
    h.set_config("data_set.table_cache_gb", 1.5 * size / table_cache.GB)
    h.set_config("data_set.HyraxHATSDataset.cone", [CONE[0], CONE[1], CONE[2] * 0.99])
    HyraxHATSDataset(h.config, crts_catalog)
    (kept,) = table_cache.copies(tables)
    assert kept != first and not first.exists()
    # a copy in use is never evicted: the limit is refused instead, naming the key
    h.set_config("data_set.HyraxHATSDataset.cone", False)
    with pytest.raises(DataError, match=r"passed data_set.table_cache_gb = .*raise data_set.table_cache_gb"):
        HyraxHATSDataset(h.config, crts_catalog)
    assert table_cache.copies(tables) == [kept]
