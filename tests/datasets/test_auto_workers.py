"""data_loader.num_workers = "auto": DataLoader workers only when reading a pass is estimated to cost more
than starting them (measured with benchmarks/workers.py); an explicit number is used as given."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from hyrax.datasets import HyraxDataset, loader
from hyrax.datasets.loader import loader_from_config
from hyrax.datasets.provider import DataProvider
from hyrax.errors import ConfigError
from tests.conftest import request_config


class Cheap(HyraxDataset):
    """An in-memory dataset: a get costs microseconds."""

    def __len__(self):
        return 100

    def get_object_id(self, idx):
        return str(idx)

    def get_image(self, idx):
        return np.full(4, float(idx), np.float32)


class Slow(Cheap):
    """A get that waits 5 ms, as a read from a slow disk does: 1,000 objects are ~5 s to read."""

    def __len__(self):
        return 1000

    def get_image(self, idx):
        time.sleep(0.005)
        return super().get_image(idx)


def provider_of(hyrax_config, name: str) -> DataProvider:
    config = request_config(hyrax_config, data={"dataset_class": f"tests.datasets.test_auto_workers.{name}"})
    return DataProvider(config, "train")


@pytest.fixture(autouse=True)
def fresh_log(monkeypatch):
    monkeypatch.setattr(loader, "_said", set())


def test_the_default_is_auto_and_chooses_by_the_measured_rule(hyrax_config):
    """Ours: cheap reads are done in the main process, slow ones by workers."""
    assert hyrax_config.config["data_loader"]["num_workers"] == "auto"
    cheap, slow = provider_of(hyrax_config, "Cheap"), provider_of(hyrax_config, "Slow")
    assert loader.seconds_per_object(slow) >= 0.005
    assert loader_from_config(hyrax_config.config, cheap).num_workers == 0
    assert loader_from_config(hyrax_config.config, slow).num_workers == loader.AUTO_WORKERS
    # the estimate is of the pass, not the dataset: 50 slow objects (~0.25 s) are read here
    assert loader_from_config(hyrax_config.config, slow, sampler=range(50)).num_workers == 0
    # a million cheap reads take seconds, but workers add more to each than they save
    assert loader_from_config(hyrax_config.config, cheap, sampler=range(10**6)).num_workers == 0


def test_published_explicit_num_workers_is_used_as_given(hyrax_config, monkeypatch):
    """As a 0.13 user sets it: h.set_config("data_loader.num_workers", 1); no reads are timed."""
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("data_loader.num_workers", 1)
    monkeypatch.setattr(loader, "seconds_per_object", lambda provider: pytest.fail("timed an explicit count"))
    assert loader_from_config(h.config, provider_of(hyrax_config, "Cheap")).num_workers == 1
    h.set_config("data_loader.num_workers", 0)
    assert loader_from_config(h.config, provider_of(hyrax_config, "Slow")).num_workers == 0


def test_the_choice_is_said_once_with_its_rule(hyrax_config, caplog):
    cheap = provider_of(hyrax_config, "Cheap")
    with caplog.at_level(logging.INFO, logger="hyrax.datasets.loader"):
        for _ in range(3):
            loader_from_config(hyrax_config.config, cheap)
    said = [r.getMessage() for r in caplog.records if "num_workers" in r.getMessage()]
    assert len(said) == 1
    assert 'data_loader.num_workers = "auto" chose 0 worker(s)' in said[0]
    assert "reading 100 objects here is estimated at" in said[0]
    assert "workers pay when reading an object takes more than the ~1 ms" in said[0]
    assert "Set data_loader.num_workers to a number" in said[0]


def test_reads_are_timed_once_per_provider_and_skips_are_not_counted(hyrax_config, monkeypatch):
    provider = provider_of(hyrax_config, "Cheap")
    reads = []
    original = provider.__getitems__
    monkeypatch.setattr(provider, "__getitems__", lambda rows: reads.append(rows) or original(rows))
    loader.seconds_per_object(provider)
    loader.seconds_per_object(provider)
    assert 2 <= len(reads) <= loader._SAMPLE_GETS + 1
    assert provider.take_skipped() == []


@pytest.mark.parametrize("value", ["many", -1, 1.5, True])
def test_num_workers_must_be_auto_or_a_whole_number(hyrax_config, value):
    with pytest.raises(ConfigError) as raised:
        hyrax_config.set_config("data_loader.num_workers", value)
    assert "data_loader.num_workers" in str(raised.value)
    assert '"auto" or a whole number >= 0' in str(raised.value)
    for fine in ("auto", 0, 3):
        hyrax_config.set_config("data_loader.num_workers", fine)
