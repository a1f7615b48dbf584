"""The one registry mechanism, and loading classes by import path.

Models, datasets and verbs (later reducers and vector databases) are each kept in a :class:`Registry`.
An entry is either an object (a class registered by a decorator or by subclassing, including a class
defined in a notebook cell) or a *lazy* import path, so that listing what exists never imports torch.

A look-up takes a registered name or a dotted import path (``"mypackage.models.MyModel"``); a miss
raises :class:`~hyrax.errors.PluginError` that lists what exists and suggests the closest name.

>>> registry = Registry("widget")
>>> _ = registry.register("Sprocket", dict)
>>> registry.get("Sprocket") is dict
True
>>> registry.get("Sprocet")
Traceback (most recent call last):
...
hyrax.errors.PluginError: Unknown widget 'Sprocet'. Did you mean 'Sprocket'? ...
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyrax.errors import PluginError

#: Name of the file an external package ships at its top level to add defaults to Hyrax's config.
PLUGIN_DEFAULT_CONFIG = "default_config.toml"


def closest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """Return the candidate closest to ``word`` (case-insensitive), or None if nothing is close.

    >>> closest("HyraxAutoEncoder", ["HyraxAutoencoder", "HyraxCNN"])
    'HyraxAutoencoder'
    """
    candidates = list(candidates)
    by_lower = {c.lower(): c for c in candidates}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[match[0]] if match else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest candidate, or an empty string."""
    match = closest(word, candidates)
    return f" Did you mean '{match}'?" if match else ""


def import_object(path: str, kind: str = "object") -> Any:
    """Import ``"package.module.Name"`` (or ``"package.module:Name"``) and return ``Name``.

    Errors say which part failed and what to check.
    """
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise PluginError(
            f"'{path}' is not an import path for a {kind}: write it as 'package.module.ClassName'."
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise PluginError(
            f"Cannot import module '{module_name}' for the {kind} '{path}': {error}. Check the spelling, "
            f"and that the package is installed in this Python environment (pip install it)."
        ) from error
    try:
        return getattr(module, attribute)
    except AttributeError:
        public = [name for name in dir(module) if not name.startswith("_")]
        raise PluginError(
            f"Module '{module_name}' has no {kind} named '{attribute}'.{did_you_mean(attribute, public)} "
            f"Check the class name in '{path}'."
        ) from None


@dataclass
class _Entry:
    name: str
    target: Any = None  # the object, once known
    lazy_path: str | None = None  # "module:attribute", imported on first use
    summary: str = ""


class Registry:
    """Named plugins of one kind ("model", "dataset", "verb"...), looked up by name or import path.

    Args:
        kind: the singular noun used in messages ("model").
        how_to_register: one sentence appended to a miss, telling users how to add their own.
    """

    def __init__(self, kind: str, how_to_register: str = ""):
        self.kind = kind
        self.how_to_register = how_to_register
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, target: Any = None, *, lazy: str | None = None, summary: str = "") -> Any:
        """Register ``target`` (or a lazy ``"module:attribute"`` path) under ``name``; returns target.

        Re-registering a name replaces the entry, so re-running a notebook cell that defines a class
        updates it rather than failing.
        """
        if (target is None) == (lazy is None):
            raise ValueError("register() takes exactly one of target or lazy")
        self._entries[name] = _Entry(name=name, target=target, lazy_path=lazy, summary=summary)
        return target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error if it is absent)."""
        self._entries.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        """Registered names, sorted, without importing anything."""
        return sorted(self._entries)

    def summary(self, name: str) -> str:
        return self._entries[name].summary

    def get(self, name: str) -> Any:
        """The object registered as ``name``, or imported from the dotted path ``name``."""
        entry = self._entries.get(name)
        if entry is not None:
            if entry.target is None:
                entry.target = import_object(entry.lazy_path, self.kind)
            return entry.target
        if "." in name or ":" in name:
            return import_object(name, self.kind)
        raise PluginError(self.miss_message(name))

    def miss_message(self, name: str) -> str:
        listing = ", ".join(self.names()) or "(none registered)"
        message = f"Unknown {self.kind} '{name}'.{did_you_mean(name, self.names())} Registered {self.kind}s: {listing}."
        if self.how_to_register:
            message += " " + self.how_to_register
        return message


def optional_import(module: str, extra: str, purpose: str) -> Any:
    """Import an optional backend, or raise PluginError saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and module.split(".")[0] != error.name.split(".")[0]:
            raise
        raise PluginError(
            f"{purpose} needs the optional package '{module.split('.')[0]}', which is not installed: "
            f"pip install 'hyrax[{extra}]'."
        ) from None


def plugin_default_config(dotted_name: str) -> Path | None:
    """The ``default_config.toml`` of the external package named by ``dotted_name``, if it ships one.

    ``"mypackage.models.MyModel"`` -> ``<site-packages>/mypackage/default_config.toml``. The package is
    located without being imported, so naming a package never runs its code at config time.
    """
    top_level = dotted_name.split(".", 1)[0].split(":", 1)[0]
    if not top_level or top_level == "hyrax" or "." not in dotted_name.replace(":", "."):
        return None
    try:
        spec = importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / PLUGIN_DEFAULT_CONFIG
        if candidate.is_file():
            return candidate
    return None


#: The registries. Built-in entries are registered lazily (by import path) where each kind lives.
MODELS = Registry(
    "model",
    "To use your own model, decorate its class with @hyrax_model (it registers by class name, also in "
    "a notebook cell) or set model.name to its import path, e.g. 'mypackage.models.MyModel'.",
)
DATASETS = Registry(
    "dataset",
    "To use your own dataset, subclass hyrax.datasets.HyraxDataset (it registers by class name, also in "
    "a notebook cell) or set dataset_class to its import path, e.g. 'mypackage.data.MyDataset'.",
)
VERBS = Registry("verb")
