"""Hyrax configuration: the documented defaults, loading, migration, merging and strict validation.

>>> from hyrax.config import ConfigManager, get_setting
>>> get_setting(ConfigManager().config, "model.name") is None   # false means "not set"
True
"""

from hyrax.config.manager import (
    DEFAULT_CONFIG_PATH,
    ConfigDict,
    ConfigManager,
    get_setting,
    to_plain,
)

__all__ = ["DEFAULT_CONFIG_PATH", "ConfigDict", "ConfigManager", "get_setting", "to_plain"]
