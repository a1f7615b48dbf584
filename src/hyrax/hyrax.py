"""The notebook facade: config access and one method per verb.

>>> from hyrax import Hyrax
>>> h = Hyrax(setup_logging=False)
>>> h.set_config("train.epochs", 2)
>>> h.config["train"]["epochs"]
2
>>> "config" in h.list_verbs()
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hyrax import plugins, verbs
from hyrax.config import ConfigDict, ConfigManager
from hyrax.plugins import did_you_mean


class Hyrax:
    """Hyrax from a notebook: ``h = Hyrax(); h.train(); h.infer()``.

    Args:
        config_file: your TOML config. None: ``./hyrax_config.toml`` if it exists, else the defaults.
            A file that does not exist is an error.
        setup_logging: send Hyrax's log messages where ``[general] log_destination`` says.

    Every verb method runs on a deep copy of :attr:`config`, so a verb never changes your config, and a
    change you make after starting a verb does not affect it.
    """

    def __init__(self, config_file: str | Path | None = None, setup_logging: bool = True):
        self._manager = ConfigManager(config_file)
        if setup_logging:
            from hyrax.log import setup_logging as _setup

            _setup(self._manager.config)

    # -- configuration ---------------------------------------------------------------------------
    @property
    def config(self) -> ConfigDict:
        """The resolved config (a dict of dicts). Prefer :meth:`set_config`, which validates."""
        return self._manager.config

    @property
    def config_file(self) -> Path | None:
        """The user config file in use, or None when only defaults are used."""
        return self._manager.config_file

    def set_config(self, key: str, value: Any, over_write: bool = False) -> None:
        """Set one config value by dotted key, checked as it is set.

        Quote a segment that contains dots: ``h.set_config("'torch.optim.Adam'.lr", 1e-3)``. A table is
        merged into the one there; ``over_write=True`` replaces what was set there before (keys never
        set keep their defaults).
        """
        self._manager.set_config(key, value, over_write=over_write)

    def config_help(self, key: str | None = None) -> str:
        """Print and return the documentation of a config section or key (from the defaults file)."""
        text = self._manager.help(key)
        print(text)
        return text

    # -- registries ------------------------------------------------------------------------------
    def list_verbs(self) -> list[str]:
        """Names of the verbs (each is also a method of this object, except command-line-only ones)."""
        return plugins.VERBS.names()

    def list_models(self) -> list[str]:
        """Names of the registered models (built-in and your @hyrax_model classes)."""
        _load_builtins("hyrax.models")
        return plugins.MODELS.names()

    def list_dataset_classes(self) -> list[str]:
        """Names of the registered datasets (built-in and your HyraxDataset subclasses)."""
        _load_builtins("hyrax.datasets")
        return plugins.DATASETS.names()

    # -- verbs -----------------------------------------------------------------------------------
    def raw_data_dimensions(self) -> tuple[list[int], list[int]]:
        """The widths and heights of the cutouts downloaded into ``general.data_dir`` (``hyrax download``),
        one of each per file, read from its manifest: what the published Hyrax's method of this name gives.
        Two empty lists when nothing was downloaded there."""
        from hyrax.download.manifest import read_manifest

        data_dir = Path(str(self.config["general"]["data_dir"])).expanduser()
        rows = read_manifest(data_dir, ["status", "width", "height"])
        rows = rows[(rows["status"] == "done") & rows["width"].notna() & rows["height"].notna()]
        return rows["width"].astype(int).tolist(), rows["height"].astype(int).tolist()

    def _run_verb(self, name: str, *args: Any, **kwargs: Any) -> Any:
        verb_class = plugins.VERBS.get(name)
        return verb_class(self._manager.resolved()).run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal look-up fails: a verb registered after import, or a typo.
        if not name.startswith("_") and name in plugins.VERBS and name not in verbs.CLI_ONLY:
            return functools.partial(self._run_verb, name)
        known = [n for n in dir(self) if not n.startswith("_")]
        raise AttributeError(
            f"'Hyrax' object has no attribute '{name}'.{did_you_mean(name, known)} "
            f"Verbs: {', '.join(n for n in plugins.VERBS.names() if n not in verbs.CLI_ONLY)}."
        )

    def __dir__(self) -> list[str]:
        extra = [n for n in plugins.VERBS.names() if n not in verbs.CLI_ONLY]
        return sorted(set(super().__dir__()) | set(extra))

    def __repr__(self) -> str:
        return f"Hyrax(config_file={str(self.config_file) if self.config_file else None!r})"


def _load_builtins(package: str) -> None:
    """Import a package whose __init__ registers its built-ins lazily (absent until it is written)."""
    import importlib

    try:
        importlib.import_module(package)
    except ModuleNotFoundError as error:
        if error.name != package:
            raise


def _verb_method(name: str, summary: str) -> Callable[..., Any]:
    def method(self: Hyrax, *args: Any, **kwargs: Any) -> Any:
        return self._run_verb(name, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"{summary}\n\nRuns on a deep copy of the config; see `hyrax {name} --help`."
    return method


for _name in plugins.VERBS.names():
    if _name not in verbs.CLI_ONLY:
        setattr(Hyrax, _name, _verb_method(_name, plugins.VERBS.summary(_name)))
