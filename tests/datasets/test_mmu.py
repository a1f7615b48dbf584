"""MultimodalUniverseDataset (issue 16) on Multimodal Universe-layout datasets written at test time with
Hugging Face ``datasets``, from real data: the bundled DECaLS galaxies as a legacysurvey-like image set
(image struct: band, flux, ivar, mask, psf_fwhm, scale), and real DESI spectra as a desi-like spectrum
set (spectrum struct: flux, ivar, lsf_sigma, lambda, mask); the schemas follow the project's cards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyrax.datasets.provider import DataProvider
from hyrax.errors import DataError
from tests.conftest import request_config

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _shared_copies(monkeypatch, tmp_path_factory):
    """The random-access copies are made once for this module (as a user's cache is), not per test."""
    if "dir" not in _CACHE:
        _CACHE["dir"] = tmp_path_factory.mktemp("xdg_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(_CACHE["dir"]))


_CACHE: dict = {}


def write_hub_layout(directory, rows: dict, features) -> None:
    """A dataset directory as on the Hub: data/train-*.parquet (two files)."""
    table = datasets.Dataset.from_dict(rows, features=features)
    (directory / "data").mkdir(parents=True)
    half = len(table) // 2
    table.select(range(half)).to_parquet(str(directory / "data" / "train-00000-of-00002.parquet"))
    table.select(range(half, len(table))).to_parquet(str(directory / "data" / "train-00001-of-00002.parquet"))


def _rgb(flux: np.ndarray) -> np.ndarray:
    """A (height, width, 3) uint8 colour picture of a (3, height, width) image, asinh-stretched."""
    scaled = np.arcsinh(np.clip(flux, 0, None) / (np.percentile(flux, 99) + 1e-9) * 10) / np.arcsinh(10)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)[..., ::-1].copy()


@pytest.fixture(scope="module")
def legacysurvey(tmp_path_factory):
    from hyrax.config import ConfigManager
    from hyrax.datasets.decals_rings import DecalsRingsDataset

    galaxies = DecalsRingsDataset(ConfigManager().config)
    count = 24
    flux = np.stack([galaxies.get_image(i) for i in range(count)]).astype(np.float32)
    features = datasets.Features(
        {
            "object_id": datasets.Value("string"),
            "image": {
                "band": datasets.Sequence(datasets.Value("string")),
                "flux": datasets.Array3D(shape=flux.shape[1:], dtype="float32"),
                "mask": datasets.Array3D(shape=flux.shape[1:], dtype="bool"),
                "ivar": datasets.Array3D(shape=flux.shape[1:], dtype="float32"),
                "psf_fwhm": datasets.Sequence(datasets.Value("float32")),
                "scale": datasets.Sequence(datasets.Value("float32")),
            },
            "rgb": datasets.Image(),
            "ra": datasets.Value("float64"),
            "dec": datasets.Value("float64"),
        }
    )
    rgb = [_rgb(image) for image in flux]
    rows = {
        "object_id": [str(galaxies.getter("object_id")(i)) for i in range(count)],
        "rgb": rgb,
        "image": [
            {
                "band": ["g", "r", "z"],
                "flux": flux[i],
                "mask": np.zeros(flux.shape[1:], bool),
                "ivar": np.ones(flux.shape[1:], np.float32),
                "psf_fwhm": [1.2, 1.1, 1.0],
                "scale": [0.262, 0.262, 0.262],
            }
            for i in range(count)
        ],
        "ra": galaxies.column("ra")[:count].tolist(),
        "dec": galaxies.column("dec")[:count].tolist(),
    }
    directory = tmp_path_factory.mktemp("mmu") / "legacysurvey"
    write_hub_layout(directory, rows, features)
    return directory, rows, flux


@pytest.fixture(scope="module")
def desi(tmp_path_factory):
    from tests.conftest import REAL_DATA

    spectra = pd.read_parquet(REAL_DATA / "desi_spectra" / "spectra_b_arm.parquet")
    features = datasets.Features(
        {
            "object_id": datasets.Value("string"),
            "spectrum": {
                "flux": datasets.Sequence(datasets.Value("float32")),
                "ivar": datasets.Sequence(datasets.Value("float32")),
                "lsf_sigma": datasets.Sequence(datasets.Value("float32")),
                "lambda": datasets.Sequence(datasets.Value("float32")),
                "mask": datasets.Sequence(datasets.Value("bool")),
            },
            "ra": datasets.Value("float64"),
            "dec": datasets.Value("float64"),
        }
    )
    rows = {
        "object_id": spectra.object_id.tolist(),
        "spectrum": [
            {
                "flux": r.flux,
                "ivar": r.ivar,
                "lsf_sigma": np.full(len(r.flux), 0.8, np.float32),
                "lambda": r["lambda"],
                "mask": r["mask"],
            }
            for _, r in spectra.iterrows()
        ],
        "ra": spectra.ra.tolist(),
        "dec": spectra.dec.tolist(),
    }
    directory = tmp_path_factory.mktemp("mmu") / "desi"
    write_hub_layout(directory, rows, features)
    return directory, spectra


def test_images_as_fields_of_their_shape(legacysurvey, hyrax_config):
    from hyrax.datasets.table import MultimodalUniverseDataset

    directory, rows, flux = legacysurvey
    dataset = MultimodalUniverseDataset(hyrax_config.config, directory)
    assert len(dataset) == 24
    assert {"object_id", "ra", "image.flux", "image.band", "image.psf_fwhm"} <= set(dataset.fields())
    ids = list(dataset.column("object_id"))
    assert ids == rows["object_id"]
    read = dataset.read_rows([0, 13], ["image.flux", "image.band"])
    assert read["image.flux"].shape == (2, *flux.shape[1:]) and read["image.flux"].dtype == np.float32
    np.testing.assert_array_equal(read["image.flux"], flux[[0, 13]])
    assert list(read["image.band"][1]) == ["g", "r", "z"]
    np.testing.assert_array_equal(dataset.getter("image.flux")(5), flux[5])


def test_spectra_through_data_request_with_split_and_max_samples(desi, hyrax_config):
    directory, spectra = desi
    hyrax_config.set_config("data_set.MultimodalUniverseDataset.max_samples", 7)
    entry = {
        "dataset_class": "MultimodalUniverseDataset",
        "data_location": str(directory),
        "fields": ["spectrum.flux", "spectrum.lambda", "ra"],
    }
    provider = DataProvider(request_config(hyrax_config, mmu=entry), "train")
    assert len(provider) == 7
    batch = provider.collate([provider[i] for i in range(7)])
    assert batch["mmu"]["spectrum.flux"].shape == (7, 2751)
    np.testing.assert_array_equal(batch["mmu"]["spectrum.flux"][3], spectra.flux[3])
    assert list(batch["object_id"]) == spectra.object_id[:7].tolist()


def test_published_config_keys_and_errors(tmp_path, legacysurvey, hyrax_config):
    from hyrax.datasets.table import MultimodalUniverseDataset
    from hyrax.testing import check_dataset

    directory, _, _ = legacysurvey
    hyrax_config.set_config(
        "data_set.MultimodalUniverseDataset.streaming", True
    )  # published; rows always stream
    hyrax_config.set_config("data_set.MultimodalUniverseDataset.split", "train")
    dataset = MultimodalUniverseDataset(hyrax_config.config, directory)
    assert any("unique" in line for line in check_dataset(dataset))
    with pytest.raises(DataError, match="MultimodalUniverseDataset needs data_location"):
        MultimodalUniverseDataset(hyrax_config.config, None)
    with pytest.raises(DataError, match="'.*nowhere' does not exist"):
        MultimodalUniverseDataset(hyrax_config.config, tmp_path / "nowhere")
    hyrax_config.set_config("data_set.MultimodalUniverseDataset.split", "test")
    with pytest.raises(DataError, match="MultimodalUniverseDataset: cannot read .*test"):
        MultimodalUniverseDataset(hyrax_config.config, directory)


def test_the_published_notebooks_struct_fields_and_pictures(legacysurvey, desi, tmp_path, monkeypatch):
    """The published mmu_images/mmu_spectra notebooks' cells, unchanged but for data_location (the Hub
    cannot be reached here): no ``fields``, so every column once; a struct column is a dict of its
    subfields (``["mmu"]["image"]["flux"]``), an image column a (height, width, 3) picture."""
    import hyrax

    monkeypatch.chdir(tmp_path)
    directory, rows, flux = legacysurvey
    h = hyrax.Hyrax()
    h.config["data_request"] = {
        "infer": {
            "mmu": {
                "dataset_class": "MultimodalUniverseDataset",
                "data_location": str(directory),
                "primary_id_field": "object_id",
                "dataset_config": {
                    "MultimodalUniverseDataset": {"split": "train", "max_samples": 100, "streaming": True}
                },
            }
        }
    }
    prepared = h.prepare()
    assert len(prepared["infer"]) == 24
    first = prepared["infer"][0]["mmu"]
    assert set(first) == {"object_id", "image", "rgb", "ra", "dec"}
    assert set(first["image"]) == {"band", "flux", "mask", "ivar", "psf_fwhm", "scale"}
    for value in first["image"].values():
        assert isinstance(value, np.ndarray) and value.shape and value.dtype
    np.testing.assert_array_equal(first["image"]["flux"], flux[0])
    assert first["rgb"].shape == (*flux.shape[2:], 3) and first["rgb"].dtype == np.uint8
    np.testing.assert_array_equal(first["rgb"], rows["rgb"][0])  # PNG is lossless
    from PIL import Image

    assert Image.fromarray(first["rgb"]).size == flux.shape[2:][::-1]

    # A batch as a model gets it: the struct's subfields batched under its name.
    provider = prepared["infer"]
    batch = provider.collate([provider[i] for i in (0, 5, 9)])
    assert batch["mmu"]["image"]["flux"].shape == (3, *flux.shape[1:])
    np.testing.assert_array_equal(batch["mmu"]["image"]["flux"][1], flux[5])
    assert batch["mmu"]["rgb"].shape == (3, *flux.shape[2:], 3)
    assert "image.flux" not in batch["mmu"]

    spectra_dir, spectra = desi
    h.config["data_request"]["infer"]["mmu"]["data_location"] = str(spectra_dir)
    spectrum = h.prepare()["infer"][0]["mmu"]["spectrum"]
    assert set(spectrum) == {"flux", "ivar", "lsf_sigma", "lambda", "mask"}
    np.testing.assert_array_equal(spectrum["lambda"], spectra["lambda"][0])
    np.testing.assert_array_equal(spectrum["flux"], spectra.flux[0])


def test_a_struct_field_and_its_subfields_can_be_asked_for(legacysurvey, hyrax_config):
    directory, _, flux = legacysurvey
    entry = {
        "dataset_class": "MultimodalUniverseDataset",
        "data_location": str(directory),
        "fields": ["image", "image.flux"],
    }
    provider = DataProvider(request_config(hyrax_config, mmu=entry), "train")
    batch = provider.collate([provider[i] for i in range(4)])
    np.testing.assert_array_equal(batch["mmu"]["image"]["flux"], batch["mmu"]["image.flux"])
    np.testing.assert_array_equal(batch["mmu"]["image.flux"], flux[:4])
    assert list(batch["mmu"]["image"]["band"][0]) == ["g", "r", "z"]
    with pytest.raises(DataError, match="image.flx.*image.flux"):
        DataProvider(request_config(hyrax_config, mmu={**entry, "fields": ["image.flx"]}), "train")


def test_images_reach_dataloader_workers_read_in_the_main_process(legacysurvey, hyrax_config):
    """Issue 26: every table dataset with the default num_workers (Lance is read in the main process)."""
    from hyrax.datasets.loader import loader_from_config

    directory, _, flux = legacysurvey
    entry = {
        "dataset_class": "MultimodalUniverseDataset",
        "data_location": str(directory),
        "fields": ["image"],
    }
    request_config(hyrax_config, mmu=entry)
    hyrax_config.set_config("data_loader.num_workers", 2)  # read by workers ("auto" picks 0 here)
    hyrax_config.set_config("data_loader.batch_size", 8)
    batches = list(loader_from_config(hyrax_config.config, DataProvider(hyrax_config.config, "train")))
    np.testing.assert_array_equal(np.concatenate([b["mmu"]["image"]["flux"] for b in batches]), flux)


def test_images_take_the_one_image_path(legacysurvey, hyrax_config):
    """Issue 26: the image keys every image dataset reads apply to a Multimodal Universe image's flux, in
    the field and in the image dict alike; its default keeps the flux as published."""
    directory, _, flux = legacysurvey
    hyrax_config.set_config("data_set.normalize", "standardize")
    hyrax_config.set_config("data_set.crop_to", [32, 32])
    entry = {
        "dataset_class": "MultimodalUniverseDataset",
        "data_location": str(directory),
        "fields": ["image", "image.flux"],
    }
    provider = DataProvider(request_config(hyrax_config, mmu=entry), "train")
    sample = provider[3]["mmu"]
    assert sample["image.flux"].shape == (3, 32, 32)
    np.testing.assert_array_equal(sample["image"]["flux"], sample["image.flux"])
    assert abs(float(np.median(sample["image.flux"][0]))) < 1e-6  # minus the median: each band centred
    raw = flux[3, 0, 16:48, 16:48]  # cut about the centre, then normalised over what is kept
    noise = 1.4826 * np.median(np.abs(raw - np.median(raw)))
    np.testing.assert_allclose(sample["image.flux"][0], (raw - np.median(raw)) / noise, atol=1e-4)
