"""First contact with real survey data: each data kind a user brings goes train (1 epoch) -> infer -> map
(UMAP) -> the map's page with the settings a new user writes (where the data is, which fields) and every
other setting at its default, DataLoader workers included.

The data are real, in tests/data (each folder's README says where from): radio cutouts in Jy/beam with
blank pixels, Galaxy Zoo JPEGs, a broker's Parquet export of ZTF alerts (NaN, 3.4e38 sentinels, stamps
cut at a CCD edge, an unreadable packet).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.datasets.test_images import ztf_export  # noqa: F401  (a fixture)


def first_contact(h, request: dict, color_column: str | None = None):
    """What a new user runs: train one epoch, infer, map, save the page; the latent vectors back."""
    h.set_config("data_request.train.data", request)
    h.set_config("data_request.infer.data", request)
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("train.epochs", 1)
    model = h.train()
    loss = model.final_training_metrics["training_loss"]
    assert np.isfinite(loss), loss
    results = h.infer()
    vectors = np.stack([np.asarray(results[i]).ravel() for i in range(len(results))])
    assert np.isfinite(vectors).all()
    h.reduce_dimensions()
    view = h.visualize(color_column=color_column)
    page = view.save("map.html")
    assert page.stat().st_size > 10_000
    return vectors


@pytest.fixture
def h():
    from hyrax import Hyrax

    return Hyrax()


def test_radio_cutouts_in_jy_per_beam(h, real_data):
    """Findings 8 and 7's radio case: 56 Parkes cutouts in Jy/beam, 16 with blank (NaN) pixels at the
    survey's edge. With Hyrax 0.x's raw pixels the latent space was near-constant (spread ~4e-5)."""
    vectors = first_contact(
        h,
        {"dataset_class": "FitsImageDataset", "data_location": str(real_data / "radio_parkes_1904")},
        color_column="peak_jy_beam",
    )
    assert len(vectors) == 56
    assert vectors.std(axis=0).mean() > 1e-3


def test_galaxy_zoo_jpegs(h, real_data):
    """JPEG cutouts with Galaxy Zoo's own catalog (its id column is iauname), read at 64 x 64 (the 424 x 424
    originals train too, ~4x slower)."""
    vectors = first_contact(
        h,
        {
            "dataset_class": "ImageFolderDataset",
            "data_location": str(real_data / "gz_decals_rings" / "jpeg"),
            "dataset_config": {
                "object_id_column_name": "iauname",
                "ImageFolderDataset": {"resize_to": [64, 64]},
            },
        },
        color_column="ring",
    )
    assert len(vectors) == 16


def test_broker_parquet_export_of_real_ztf_alerts(h, ztf_export):  # noqa: F811
    """Finding 4: NaN, 3.4e38 and CCD-edge stamps train without a NaN loss; the packet whose stamps
    cannot be read is skipped and named by its alert id."""
    h.set_config("data_set.on_bad_object", "skip")
    vectors = first_contact(h, {"dataset_class": "AlertParquetDataset", "data_location": str(ztf_export)})
    assert len(vectors) == 16


def test_per_object_csv_light_curves(h, real_data):
    """Finding 5: one CSV per star (time, mag, magerr, band), read as it is; the built-in autoencoder takes
    the resampled light curve, and the map draws its thumbnails as curves."""
    vectors = first_contact(
        h,
        {
            "dataset_class": "LightCurveDataset",
            "data_location": str(real_data / "s82_rrlyrae" / "per_object"),
        },
    )
    assert len(vectors) == 40
