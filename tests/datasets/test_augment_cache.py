"""Augmentation caching: a dataset's augment_cache_key names results kept for reuse, in bounded memory."""

from __future__ import annotations

import numpy as np

from hyrax.datasets import HyraxDataset
from hyrax.datasets.augment_cache import AugmentCache
from hyrax.datasets.provider import DataProvider
from tests.conftest import request_config


class FourViews(HyraxDataset):
    """A 0.13 dataset: four fixed augmented views of each object, costly to make, named by a cache key."""

    def __len__(self):
        return 6

    def get_object_id(self, idx):
        return str(idx)

    def get_image(self, idx):
        return np.full(1000, float(idx), np.float32)

    def augment_image(self, data, idx, rng_seed):
        self.__dict__.setdefault("calls", []).append((idx, rng_seed % 4))
        return data + (rng_seed % 4)

    def augment_cache_key(self, idx, rng_seed):
        return (idx, rng_seed % 4)


class Fresh(FourViews):
    """The published default: augment_cache_key returns None, augmented afresh each time."""

    def augment_cache_key(self, idx, rng_seed):
        return None


def calls(provider) -> list[tuple[int, int]]:
    return provider.datasets["data"].__dict__.get("calls", [])


def epochs(provider, count: int) -> list[np.ndarray]:
    seen = []
    for epoch in range(count):
        provider.start_epoch("train", epoch)
        seen += [provider[i]["data"]["image"] for i in range(len(provider))]
    return seen


def test_published_augment_cache_key_reuses_augmented_values(hyrax_config):
    """As a 0.13 dataset writes it: augment_cache_key(idx, rng_seed) -> a key; each key augmented once."""
    config = request_config(
        hyrax_config, data={"dataset_class": "tests.datasets.test_augment_cache.FourViews", "augment": True}
    )
    provider = DataProvider(config, "train")
    values = epochs(provider, 12)
    assert 6 <= len(calls(provider)) == len(set(calls(provider))) <= 6 * 4  # never the same view twice
    for value in values:
        assert value[0] - np.floor(value[0]) == 0 and not value.flags.writeable  # the kept copy is read-only
    hyrax_config.set_config(
        "data_request.train.data",
        {"dataset_class": "tests.datasets.test_augment_cache.Fresh", "augment": True},
    )
    fresh = DataProvider(hyrax_config.config, "train")
    epochs(fresh, 3)
    assert len(calls(fresh)) == 6 * 3


def test_augment_cache_is_bounded_and_can_be_off(hyrax_config):
    hyrax_config.set_config("data_set.augment_cache_mb", 0.01)  # ~10 kB: two of the 4 kB views
    config = request_config(
        hyrax_config, data={"dataset_class": "tests.datasets.test_augment_cache.FourViews", "augment": True}
    )
    provider = DataProvider(config, "train")
    epochs(provider, 4)
    assert provider.augment_cache.bytes <= 0.01 * 2**20 and len(provider.augment_cache) == 2
    hyrax_config.set_config("data_set.use_cache", False)
    provider = DataProvider(hyrax_config.config, "train")
    assert provider.augment_cache is None
    epochs(provider, 2)
    assert len(calls(provider)) == 12
    cache = AugmentCache(max_bytes=100)
    assert cache.put("big", np.zeros(100)).shape == (100,) and len(cache) == 0  # larger than the budget
