"""FitsImageDataset on the real HSC star cutouts and on generated multi-band cutouts, and its bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax.datasets.fits import FitsImageDataset
from hyrax.datasets.provider import DataProvider
from hyrax.errors import DataError
from tests.conftest import request_config
from tests.datasets.conftest import write_fits


@pytest.fixture
def stars(real_data, hyrax_config):
    folder = real_data / "hsc_stars_hyrax"
    for key, value in {
        "filter_catalog": str(folder / "star_cat_correct.fits"),
        "object_id_column_name": "# object_id",
        "filename_column_name": "star_filename",
    }.items():
        hyrax_config.set_config(f"data_set.{key}", value)
    return folder, hyrax_config


@pytest.mark.parametrize(
    "catalog", ["star_cat_correct.fits", "star_cat_correct.pq", "star_cat_correct.astropy.csv"]
)
def test_real_hsc_stars_in_every_catalog_format(stars, catalog):
    folder, manager = stars
    manager.set_config("data_set.filter_catalog", str(folder / catalog))
    manager.set_config("data_set.crop_to", [24, 24])
    dataset = FitsImageDataset(manager.config, folder)
    assert len(dataset) == 10
    image = dataset.get_image(0)
    assert image.shape == (1, 24, 24) and image.dtype == np.float32
    assert np.isfinite(image).all() and image.max() > 0  # a real star, read from HDU 1
    assert "ira" in dataset.fields() and dataset.getter("ira")(0) == pytest.approx(30.591338, abs=1e-5)


def test_ragged_real_cutouts_need_crop_to(stars):
    folder, manager = stars
    provider = DataProvider(
        request_config(manager, data={"dataset_class": "FitsImageDataset", "data_location": str(folder)}),
        "train",
    )
    with pytest.raises(DataError, match=r"Field 'image' has arrays of different shapes.*crop_to"):
        provider.collate([provider[i] for i in range(len(provider))])


def test_multiband_stack_order_crop_and_transform(cutouts, hyrax_config):
    base, rows = cutouts(n=3, filters=("HSC-G", "HSC-R", "HSC-I"), shape=(10, 12))
    rows.to_csv(base / "catalog.csv", index=False)
    hyrax_config.set_config("data_set.filters", ["HSC-I", "HSC-G"])
    hyrax_config.set_config("data_set.crop_to", [6, 6])
    hyrax_config.set_config("data_set.normalize", "none")  # the raw pixels, to check the order
    dataset = FitsImageDataset(hyrax_config.config, base)
    image = dataset.get_image(1)
    assert image.shape == (2, 6, 6)
    assert image[0].min() >= 20 and image[1].max() < 1  # HSC-I (offset 20) first, then HSC-G (offset 0)
    assert dataset.getter("ra")(2) == 152
    hyrax_config.set_config("data_set.transform", "arcsinh")
    transformed = FitsImageDataset(hyrax_config.config, base).get_image(1)
    assert np.allclose(transformed, np.arcsinh(image))


def test_image_in_primary_hdu_is_found(tmp_path, hyrax_config):
    import pandas as pd

    write_fits(tmp_path / "a.fits", np.ones((4, 4), np.float32), primary_image=True)
    pd.DataFrame({"object_id": ["a"], "filename": ["a.fits"]}).to_parquet(tmp_path / "catalog.parquet")
    assert FitsImageDataset(hyrax_config.config, tmp_path).get_image(0).shape == (1, 4, 4)


def test_missing_band_objects_are_dropped_with_a_summary(cutouts, hyrax_config, caplog):
    base, rows = cutouts(n=4)
    rows = rows.drop(index=rows.index[(rows["object_id"] == "1002") & (rows["filter"] == "HSC-R")])
    rows.to_csv(base / "catalog.csv", index=False)
    dataset = FitsImageDataset(hyrax_config.config, base)
    assert len(dataset) == 3 and "1002" not in dataset.object_ids
    assert dataset.dropped["missing band"] == 1
    assert list(dataset.column("object_id")) == ["1000", "1001", "1003"]


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("truncate", ["Object 1001", "cannot read FITS file", "corrupt or truncated", "1001_HSC-R.fits"]),
        ("garbage", ["Object 1001", "cannot read FITS file", "corrupt or truncated"]),
        ("delete", ["Object 1001", "does not exist", "1001_HSC-R.fits"]),
    ],
)
def test_bad_files_name_the_object_and_file(cutouts, hyrax_config, damage, words):
    base, rows = cutouts(n=3, shape=(64, 64))
    rows.to_csv(base / "catalog.csv", index=False)
    target = base / "images" / "1001_HSC-R.fits"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: 2880 * 2 + 1000])
    elif damage == "garbage":
        target.write_bytes(b"not a fits file" * 300)
    else:
        target.unlink()
    dataset = FitsImageDataset(hyrax_config.config, base)
    dataset.get_image(0)
    with pytest.raises(DataError) as error:
        dataset.get_image(1)
    for word in words:
        assert word in str(error.value)


def test_bad_file_can_be_skipped_and_is_recorded(cutouts, hyrax_config):
    base, rows = cutouts(n=3)
    rows.to_csv(base / "catalog.csv", index=False)
    (base / "images" / "1001_HSC-R.fits").write_bytes(b"junk" * 1000)
    hyrax_config.set_config("data_set.on_bad_object", "skip")
    config = request_config(
        hyrax_config, data={"dataset_class": "FitsImageDataset", "data_location": str(base)}
    )
    provider = DataProvider(config, "train")
    batch = provider.collate([provider[i] for i in range(3)])
    assert batch["object_id"].tolist() == ["1000", "1002"]
    assert provider.skipped[0][0] == "1001" and "cannot read FITS file" in provider.skipped[0][1]


def test_bands_of_different_shapes(cutouts, hyrax_config):
    base, rows = cutouts(n=2)
    rows.to_csv(base / "catalog.csv", index=False)
    write_fits(base / "images" / "1001_HSC-R.fits", np.zeros((9, 8), np.float32))
    with pytest.raises(
        DataError, match=r"Object 1001: its bands have different shapes.*HSC-R: \(9, 8\).*crop_to"
    ):
        FitsImageDataset(hyrax_config.config, base).get_image(1)


def test_nan_pixels_in_a_fits_file_name_the_object(cutouts, hyrax_config):
    """By default (nan_mode "auto") a NaN pixel is background; with nan_mode = false it stops, naming
    the object and the settings that mend it."""
    base, rows = cutouts(n=2)
    rows.to_csv(base / "catalog.csv", index=False)
    data = np.ones((8, 8), np.float32)
    data[2, 3] = np.nan
    write_fits(base / "images" / "1000_HSC-G.fits", data)
    config = request_config(
        hyrax_config, data={"dataset_class": "FitsImageDataset", "data_location": str(base)}
    )
    image = DataProvider(config, "train")[0]["data"]["image"]
    assert np.isfinite(image).all() and image[0, 2, 3] == 0.0
    hyrax_config.set_config("data_set.nan_mode", False)
    config = request_config(
        hyrax_config, data={"dataset_class": "FitsImageDataset", "data_location": str(base)}
    )
    with pytest.raises(
        DataError, match=r"Object 1000: its image has 1 NaN/inf pixel.*nan_mode.*on_bad_object"
    ):
        DataProvider(config, "train")[0]


def test_catalog_problems(cutouts, hyrax_config, tmp_path):
    base, rows = cutouts(n=2)
    rows.rename(columns={"filename": "path"}).to_csv(base / "catalog.csv", index=False)
    with pytest.raises(DataError, match=r"has no column 'filename'.*Set data_set.filename_column_name"):
        FitsImageDataset(hyrax_config.config, base)
    import pandas as pd

    pd.concat([rows, rows.iloc[[0]]]).to_csv(base / "catalog.csv", index=False)
    with pytest.raises(DataError, match=r"lists object 1000 in filter HSC-G 2 times"):
        FitsImageDataset(hyrax_config.config, base)
    with pytest.raises(DataError, match="No catalog for FitsImageDataset"):
        FitsImageDataset(hyrax_config.config, tmp_path / "empty")
    hyrax_config.set_config("data_set.transform", "not_a_function")
    rows.to_csv(base / "catalog.csv", index=False)
    with pytest.raises(DataError, match=r'transform = "not_a_function" is not a numpy function'):
        FitsImageDataset(hyrax_config.config, base)


def test_an_unreadable_file_is_a_permission_error_not_a_corrupt_one(tmp_path, monkeypatch):
    """A file the user may not read is named as a permissions problem (root reads everything, so the
    check that cfitsio's own message hides is exercised by reporting the file as not readable)."""
    import os

    from hyrax.datasets import fits_reader

    path = tmp_path / "star.fits"
    write_fits(path, np.ones((4, 4), np.float32))
    real_access = os.access
    monkeypatch.setattr(
        fits_reader.os, "access", lambda p, mode: False if str(p) == str(path) else real_access(p, mode)
    )

    def refuse(*args, **kwargs):
        raise OSError("FITSIO status = 104: could not open the named file")

    monkeypatch.setattr(fits_reader, "fitsio", None)
    monkeypatch.setattr(fits_reader, "_read_astropy", refuse)
    with pytest.raises(DataError, match=r"Object s1: no permission to read .*star.fits.*may be fine"):
        fits_reader.read_image(path, "s1", [None])
