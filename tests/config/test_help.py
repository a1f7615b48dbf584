"""Documentation of sections and keys comes from the comments of the defaults file."""

from __future__ import annotations

import tomllib

import pytest

from hyrax.config import DEFAULT_CONFIG_PATH, ConfigManager
from hyrax.config.help import Documentation
from hyrax.config.keys import join_key, walk
from hyrax.errors import ConfigError


def test_every_default_key_has_a_comment():
    docs = Documentation()
    docs.add_file(DEFAULT_CONFIG_PATH)
    with open(DEFAULT_CONFIG_PATH, "rb") as handle:
        defaults = tomllib.load(handle)
    undocumented = [
        join_key(path)
        for path, value in walk(defaults)
        if not isinstance(value, dict) and not docs.key_comments.get(path)
    ]
    assert undocumented == []


def test_key_help_shows_comment_and_current_value():
    manager = ConfigManager()
    manager.set_config("train.epochs", 3)
    text = manager.help("train.epochs")
    assert "Number of passes over the training data." in text
    assert "current value: 3" in text


def test_section_help_and_quoted_sections():
    manager = ConfigManager()
    assert "base_channel_size = 32" in manager.help("model.HyraxAutoencoder")
    assert "Keyword arguments of torch.optim.Adam" in manager.help("'torch.optim.Adam'")
    assert "data_set.HyraxRandomDataset" in manager.help("data_set")
    assert "general" in manager.help()


def test_unknown_help_key_suggests():
    with pytest.raises(
        ConfigError, match=r"No config section or key 'trian\.epochs'.*Did you mean 'train\.epochs'"
    ):
        ConfigManager().help("trian.epochs")
