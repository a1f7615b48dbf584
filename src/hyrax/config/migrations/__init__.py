"""Numbered config migrations: configs written for earlier Hyrax releases keep loading.

Each module ``NNN_<what>.py`` upgrades a config from version NNN-1 to NNN. It defines
``migrate(config: dict) -> list[str]``, which edits the user's config in place and returns one message
per change (old -> new), and ``MOVED``, a map of old dotted keys to their new home that the unknown-key
error uses to say where a key went.

A config without ``config_version`` is version 0; every step runs, and a step that finds nothing to
change says nothing.
"""

from __future__ import annotations

import importlib
import re
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType

from hyrax.errors import ConfigError, ConfigMigrationWarning

_STEP = re.compile(r"^(\d{3})_\w+\.py$")


@cache
def steps() -> tuple[ModuleType, ...]:
    """The migration modules, in version order."""
    found = sorted(p.name for p in Path(__file__).parent.iterdir() if _STEP.match(p.name))
    modules = tuple(importlib.import_module(f"{__name__}.{name[:-3]}") for name in found)
    for number, module in enumerate(modules, start=1):
        if int(module.__name__.rsplit(".", 1)[1][:3]) != number:
            raise RuntimeError(f"config migrations must be numbered 001, 002, ...; found {module.__name__}")
    return modules


def current_version() -> int:
    """The config_version this release writes: the number of the last migration."""
    return len(steps())


def moved_keys() -> dict[str, str]:
    """Old dotted key -> where it lives now, over every migration."""
    moved: dict[str, str] = {}
    for module in steps():
        moved.update(getattr(module, "MOVED", {}))
    return moved


def migrate(config: dict, source: str) -> dict:
    """Upgrade ``config`` (a user's file, as a dict) in place to the current version and return it.

    Every change is a :class:`~hyrax.errors.ConfigMigrationWarning` naming old -> new. A version newer
    than this release knows is an error that says to upgrade Hyrax.
    """
    version = config.get("config_version", 0)
    latest = current_version()
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ConfigError(
            f"config_version in {source} must be a whole number such as {latest}, got {version!r}."
        )
    if version > latest:
        from hyrax import __version__

        raise ConfigError(
            f"{source} has config_version = {version}, but this Hyrax ({__version__}) reads configs up to "
            f"version {latest}. Upgrade Hyrax (pip install --upgrade hyrax) to use this config."
        )
    for module in steps()[version:]:
        for message in module.migrate(config):
            warnings.warn(f"{source}: {message}", ConfigMigrationWarning, stacklevel=2)
    config["config_version"] = latest
    return config
