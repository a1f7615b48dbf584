"""NumpyLoader: numpy batches in the sampler's order, with and without worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax.datasets.loader import NumpyLoader, loader_from_config
from hyrax.datasets.provider import DataProvider
from hyrax.datasets.sampling import EpochSampler
from tests.conftest import request_config


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_numpy_in_sampler_order(hyrax_config, workers):
    provider = DataProvider(
        request_config(hyrax_config, data={"dataset_class": "DecalsRingsDataset"}), "train"
    )
    order = EpochSampler(np.arange(40), seed=1)
    expected = provider.ids()[order.order()].tolist()  # epoch 0's order, before the loader moves on
    batches = list(NumpyLoader(provider, order, batch_size=16, num_workers=workers))
    ids = np.concatenate([b["object_id"] for b in batches])
    assert ids.tolist() == expected
    assert order.epoch == 1  # iterating once was one epoch
    image = batches[0]["data"]["image"]
    assert isinstance(image, np.ndarray) and image.shape == (16, 3, 64, 64) and image.dtype == np.float32
    assert isinstance(batches[0]["data"]["ring"], np.ndarray)


def test_loader_from_config_and_all_skipped_batches(hyrax_config):
    hyrax_config.set_config("data_set.HyraxRandomDataset.number_invalid_values", 1000)
    hyrax_config.set_config("data_set.on_bad_object", "skip")
    hyrax_config.set_config("data_loader.num_workers", 0)
    hyrax_config.set_config("data_loader.batch_size", 10)
    config = request_config(hyrax_config, data={"dataset_class": "HyraxRandomDataset"})
    provider = DataProvider(config, "train")
    loader = loader_from_config(config, provider)
    batches = list(loader)
    kept = sum(len(b["object_id"]) for b in batches)
    assert kept + loader.skips.count == 100 and loader.skips.count > 50


@pytest.mark.parametrize("workers", [0, 2])
def test_skips_in_worker_processes_reach_the_main_process(hyrax_config, tmp_path, workers):
    """Objects skipped inside DataLoader workers are counted and listed, as in the main process."""
    from hyrax.datasets.loader import Skips

    hyrax_config.set_config("data_set.HyraxRandomDataset.number_invalid_values", 30)
    hyrax_config.set_config("data_set.on_bad_object", "skip")
    config = request_config(hyrax_config, data={"dataset_class": "HyraxRandomDataset"})
    provider = DataProvider(config, "train")
    bad = [i for i in range(100) if not np.isfinite(provider.datasets["data"].get_image(i)).all()]
    skips = Skips(tmp_path / "skipped.csv")
    loader = NumpyLoader(provider, range(100), batch_size=10, num_workers=workers, skips=skips)
    kept = sum(len(b["object_id"]) for b in loader)
    assert 0 < len(bad) < 100 and skips.count == len(bad) and kept == 100 - len(bad)
    import pandas as pd

    listed = pd.read_csv(tmp_path / "skipped.csv", dtype={"object_id": str})
    assert sorted(listed["row"]) == bad and listed["reason"].str.contains("NaN").all()
    assert f"{len(bad)} object(s) skipped" in skips.summary()
