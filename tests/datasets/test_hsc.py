"""HSCDataset: a directory of downloader-named cutouts, with and without a manifest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyrax.datasets.hsc import HSCDataset, parse_cutout_name
from hyrax.errors import DataError
from tests.datasets.conftest import write_fits

FILTERS = ("HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y")


def test_parse_names():
    assert parse_cutout_name("36411452835238206_coadd_30.59_-6.28_8279_HSC-I.fits") == (
        "36411452835238206",
        "HSC-I",
    )
    assert parse_cutout_name("notes.txt") is None


def test_directory_scan_drops_incomplete_and_small_objects(cutouts, hyrax_config):
    base, rows = cutouts(n=5, filters=FILTERS, shape=(16, 16), hsc_names=True)
    (base / rows.loc[(rows.object_id == "1001") & (rows["filter"] == "HSC-Z"), "filename"].item()).unlink()
    small = rows.loc[(rows.object_id == "1003") & (rows["filter"] == "HSC-G"), "filename"].item()
    write_fits(base / small, np.zeros((12, 16), np.float32))
    bigger = rows.loc[(rows.object_id == "1004") & (rows["filter"] == "HSC-G"), "filename"].item()
    write_fits(base / bigger, np.zeros((18, 17), np.float32))
    dataset = HSCDataset(hyrax_config.config, base)
    assert list(dataset.object_ids) == ["1000", "1002", "1004"]
    assert dataset.filters == list(FILTERS)  # blue to red, not alphabetical
    assert dataset.dropped["missing band"] == 1 and dataset.dropped["smaller than 16x16"] == 1
    assert dataset.get_image(2).shape == (5, 16, 16)  # 1004's larger band was centre-cropped


def test_filters_choose_bands_and_order(cutouts, hyrax_config):
    base, _ = cutouts(n=2, filters=FILTERS, hsc_names=True)
    hyrax_config.set_config("data_set.filters", ["HSC-I", "HSC-G"])
    hyrax_config.set_config("data_set.normalize", "none")  # the raw pixels, to check the order
    dataset = HSCDataset(hyrax_config.config, base)
    image = dataset.get_image(0)
    assert image.shape == (2, 8, 8) and image[0].min() >= 20 and image[1].max() < 1


def test_manifest_is_used_when_present(cutouts, hyrax_config):
    base, rows = cutouts(n=3, filters=("HSC-G",), hsc_names=True)
    manifest = rows.rename(columns={"filename": "file"}).assign(status="done", height=8, width=8)
    manifest.loc[manifest.object_id == "1001", "status"] = "failed"
    manifest.to_parquet(base / "manifest.parquet")
    dataset = HSCDataset(hyrax_config.config, base)
    assert list(dataset.object_ids) == ["1000", "1002"]


def test_empty_directory_says_how_to_get_data(tmp_path, hyrax_config):
    with pytest.raises(DataError, match="no cutouts named <object_id>_..._<filter>.fits.*hyrax download"):
        HSCDataset(hyrax_config.config, tmp_path)


def test_catalog_of_real_stars_loads_as_hsc_names(real_data, tmp_path, hyrax_config):
    """The real star cutouts, renamed as the downloader names them, load through HSCDataset."""
    catalog = pd.read_parquet(real_data / "hsc_stars_hyrax" / "star_cat_correct.pq")
    for object_id, ra, dec, name in catalog[["# object_id", "ira", "idec", "star_filename"]].itertuples(
        index=False
    ):
        target = tmp_path / f"{object_id}_coadd_{ra:.5f}_{dec:.5f}_8279_HSC-I.fits"
        target.write_bytes((real_data / "hsc_stars_hyrax" / name).read_bytes())
    dataset = HSCDataset(hyrax_config.config, tmp_path)
    assert len(dataset) == 10 - dataset.dropped["smaller than 25x25"]
    assert dataset.get_image(0).shape == (1, 25, 25)
    # Positions from the names are metadata (the map colours by them; the published Hyrax has them too).
    first = catalog.set_index(catalog["# object_id"].astype(str)).loc[dataset.getter("object_id")(0)]
    assert dataset.getter("ra")(0) == pytest.approx(first["ira"], abs=1e-5)
    assert (
        dataset.getter("dec")(0) == pytest.approx(first["idec"], abs=1e-5)
        and dataset.getter("tract")(0) == 8279
    )
