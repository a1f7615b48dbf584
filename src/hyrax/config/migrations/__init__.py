"""Numbered config migrations: configs written for earlier Hyrax releases keep loading.

Versions are the published Hyrax's: its configs are stamped ``config_version = 7`` today, and version 1
is the first layout. Each module ``NNN_<what>.py`` upgrades a config from version NNN-1 to NNN. It
defines ``migrate(config: dict) -> list[str]``, which edits the user's config in place and returns one
message per change (old -> new), and ``MOVED``, a map of old dotted keys to their new home that the
unknown-key error uses to say where a key went.

A config without ``config_version`` may be of any age: every step runs, and a step that finds nothing to
change says nothing (every step is idempotent, which also makes configs written by earlier releases of
this Hyrax, numbered one lower, load unchanged).
"""

from __future__ import annotations

import importlib
import re
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType

from hyrax.errors import ConfigError, ConfigMigrationWarning

#: The first config layout (the published Hyrax's numbering): nothing migrates into it.
FIRST_VERSION = 1

_STEP = re.compile(r"^(\d{3})_\w+\.py$")


@cache
def steps() -> tuple[ModuleType, ...]:
    """The migration modules, in version order."""
    found = sorted(p.name for p in Path(__file__).parent.iterdir() if _STEP.match(p.name))
    modules = tuple(importlib.import_module(f"{__name__}.{name[:-3]}") for name in found)
    for number, module in enumerate(modules, start=FIRST_VERSION + 1):
        if int(module.__name__.rsplit(".", 1)[1][:3]) != number:
            raise RuntimeError(f"config migrations must be numbered 002, 003, ...; found {module.__name__}")
    return modules


def current_version() -> int:
    """The config_version this release writes: the number of the last migration."""
    return FIRST_VERSION + len(steps())


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
    version = config.get("config_version", FIRST_VERSION)
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
    for module in steps()[max(version - FIRST_VERSION, 0) :]:
        for message in module.migrate(config):
            warnings.warn(f"{source}: {message}", ConfigMigrationWarning, stacklevel=2)
    config["config_version"] = latest
    return config
