"""The published [label] alias table (name = raw value of the label field), read by [balance]."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hyrax.config import ConfigManager
from hyrax.datasets.provider import providers_for
from hyrax.datasets.sampling import BalancedSampler, training_sampler
from hyrax.errors import ConfigError

PUBLISHED = """
[data_set.HyraxRandomDataset]
size = 400
provided_labels = [0, 1, 2]
shape = [1, 2, 2]

[data_request.train.data]
dataset_class = "HyraxRandomDataset"
fields = ["image", "label"]

[balance]
field = "label"

[balance.distribution]
cat = 0.25
dog = 0.75

[label]
cat = 0
dog = 1
"""


def drawn_shares(config) -> dict[str, float]:
    provider = providers_for(config)["train"]
    indices = np.arange(len(provider))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = training_sampler(config, provider, indices, seed=0)
    labels = np.asarray(provider.datasets[provider.primary].column("label")).astype(str)
    drawn = labels[sampler.take_epoch()]
    return {value: float((drawn == value).mean()) for value in ("0", "1", "2")}, caught, sampler


def test_a_published_balance_with_label_aliases(tmp_path):
    """As a 0.13 config writes it: balance.field, a distribution by alias, [label] aliases to the raw
    integer labels; the class with no alias (2) is never drawn."""
    path = tmp_path / "hyrax_config.toml"
    path.write_text(PUBLISHED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balance.field -> label.field is said once
        config = ConfigManager(path).config
    shares, caught, sampler = drawn_shares(config)
    assert isinstance(sampler, BalancedSampler)
    assert abs(shares["0"] - 0.25) < 0.06 and abs(shares["1"] - 0.75) < 0.06 and shares["2"] == 0.0
    assert any("value(s) without a name in [label]: '2' (" in str(w.message) for w in caught)


def test_label_aliases_are_checked_and_equal_shares_among_named_classes(tmp_path):
    manager = ConfigManager()
    manager.set_config("data_set.HyraxRandomDataset.size", 300)
    manager.set_config("data_set.HyraxRandomDataset.provided_labels", [0, 1, 2])
    manager.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
    manager.set_config("label", {"field": "label", "small": 0, "large": 2})
    manager.set_config("balance.enabled", True)
    shares, _, _ = drawn_shares(manager.config)
    assert shares["1"] == 0.0 and abs(shares["0"] - 0.5) < 0.08 and abs(shares["2"] - 0.5) < 0.08
    manager.set_config("balance.distribution", {"small": 0.5, "medium": 0.5})
    with pytest.raises(ConfigError, match=r"names medium, not in the \[label\] alias table \(small, large\)"):
        drawn_shares(manager.config)
    manager.set_config("balance.distribution", {"small": 0.5, "large": 0.5})
    manager.set_config("label", {"field": "label", "small": 0, "tiny": 0})
    with pytest.raises(ConfigError, match=r"small and tiny both name the value 0"):
        drawn_shares(manager.config)
