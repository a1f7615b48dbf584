"""Load -> migrate -> merge -> validate: the one place a Hyrax config is made.

Resolution: an explicit file (``Hyrax(config_file=...)``, ``hyrax VERB -c FILE``; a missing file is an
error) -> ``./hyrax_config.toml`` -> the packaged defaults alone.

Merge, lowest first: packaged defaults < the ``default_config.toml`` of each external package named by a
dotted ``name`` / ``dataset_class`` value < the user's file < :meth:`ConfigManager.set_config`.

>>> manager = ConfigManager()
>>> manager.config["train"]["epochs"]
10
>>> manager.set_config("train.epochs", 3)
>>> manager.config["train"]["epochs"]
3
"""

from __future__ import annotations

import copy
import logging
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyrax.config import migrations, published
from hyrax.config.data_request import check_data_request
from hyrax.config.keys import get_path, join_key, set_path, split_key, walk
from hyrax.config.validate import check
from hyrax.errors import ConfigError, ConfigKeyError, ConfigStrictnessWarning
from hyrax.plugins import did_you_mean, plugin_default_config

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).with_name("hyrax_default_config.toml")
LOCAL_CONFIG_NAME = "hyrax_config.toml"
_PLUGIN_KEYS = ("name", "dataset_class")


class ConfigDict(dict):
    """A config table: a plain dict whose missing keys raise an error with the dotted key and a hint."""

    def __init__(self, *args, path: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.path = path

    def __repr__(self) -> str:
        # h.config shown in a notebook: secrets masked (the values stay readable by key).
        from hyrax.config.secrets import mask

        return "{" + ", ".join(f"{k!r}: {mask(k, v)!r}" for k, v in self.items()) + "}"

    def __missing__(self, key: str):
        dotted = join_key((*self.path, key))
        raise ConfigKeyError(
            f"Config key '{dotted}' does not exist.{did_you_mean(key, self.keys())} "
            f"See the valid keys with `hyrax config {join_key(self.path) or ''}`.".replace("  ", " ")
        )


def to_config_dict(table: Mapping, path: tuple[str, ...] = ()) -> ConfigDict:
    """Nested mappings -> nested :class:`ConfigDict`."""
    return ConfigDict(
        {k: to_config_dict(v, (*path, k)) if isinstance(v, Mapping) else v for k, v in table.items()},
        path=path,
    )


def to_plain(table: Mapping) -> dict:
    """Nested mappings -> nested plain dicts (for writing TOML)."""
    return {k: to_plain(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in table.items()}


def get_setting(config: Mapping, key: str) -> Any:
    """The value of a dotted ``key``, or None when it holds ``false`` (Hyrax's "not set").

    This is the one place ``false`` is read as "not set": code asks ``if get_setting(...) is None``
    instead of comparing with False.

    >>> get_setting({"train": {"resume": False}}, "train.resume") is None
    True
    """
    segments = split_key(key)
    try:
        value = get_path(config, segments)
    except KeyError:
        raise ConfigKeyError(f"Config key '{key}' does not exist.") from None
    return None if value is False else value


def read_toml(path: Path) -> dict:
    """Parse a TOML file; a syntax error names the file and line."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}. Fix the line it names.") from None
    except OSError as error:
        raise ConfigError(f"Cannot read config file {path}: {error.strerror}.") from None


def resolve_config_file(config_file: str | Path | None) -> Path | None:
    """The user's config file: the explicit one, else ./hyrax_config.toml, else None."""
    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"Config file '{config_file}' does not exist"
                + (" (it is a directory)" if path.is_dir() else "")
                + f" (looked in {path.resolve().parent}). Check the path, or leave it out to use "
                f"./{LOCAL_CONFIG_NAME} or the defaults."
            )
        return path
    local = Path.cwd() / LOCAL_CONFIG_NAME
    return local if local.is_file() else None


def merge(base: Mapping, override: Mapping, path: tuple[str, ...] = ()) -> dict:
    """Deep merge; ``override`` wins. A ``[data_request]`` group is replaced whole, never mixed."""
    merged = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in override.items():
        here = (*path, key)
        replace_whole = len(here) == 2 and here[0] == "data_request"
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and not replace_whole:
            merged[key] = merge(merged[key], value, here)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def with_defaults(config: Mapping) -> ConfigDict:
    """``config`` over the packaged defaults: a dataset built directly with a partial dict, as the
    published Hyrax allows (``NestedPandasDataset({"data_set": {...}}, path)``), reads every other key at
    its default. A whole config comes back unchanged.

    >>> with_defaults({"data_set": {"seed": 3}})["data_set"]["seed"], "cache_dir" in with_defaults({})["data_set"]
    (3, True)
    """
    return to_config_dict(merge(read_toml(DEFAULT_CONFIG_PATH), config))


def plugin_names(*tables: Mapping) -> list[str]:
    """Dotted ``name`` / ``dataset_class`` values: the external packages a config refers to."""
    names = []
    for table in tables:
        for path, value in walk(table):
            if path[-1] in _PLUGIN_KEYS and isinstance(value, str) and "." in value and value not in names:
                names.append(value)
    return names


class ConfigManager:
    """Builds, validates and updates one Hyrax config.

    Args:
        config_file: the user's TOML file (None: ./hyrax_config.toml if present, else defaults only).
    """

    def __init__(self, config_file: str | Path | None = None):
        self.config_file = resolve_config_file(config_file)
        self.defaults = read_toml(DEFAULT_CONFIG_PATH)
        self.default_files = [DEFAULT_CONFIG_PATH]
        self.plugin_tables: set[tuple[str, ...]] = set()
        source = str(self.config_file) if self.config_file else "the defaults"
        user = migrations.migrate(read_toml(self.config_file), source) if self.config_file else {}
        _warn_published(published.translate(user), source)
        self.user_config = user
        self.overrides: dict = {}
        for name in plugin_names(user):
            self._add_plugin_defaults(name)
        self.config = to_config_dict(merge(self.defaults, user))
        self.validate()
        logger.debug("config resolved from %s", source)

    # -- plugins ---------------------------------------------------------------------------------
    def _add_plugin_defaults(self, dotted_name: str) -> None:
        path = plugin_default_config(dotted_name)
        if path is None or path in self.default_files:
            return
        plugin = read_toml(path)
        for table_path, value in walk(plugin):
            if isinstance(value, Mapping) and not _has_path(self.defaults, table_path):
                self.plugin_tables.add(table_path)
        self.defaults = merge(self.defaults, plugin)
        self.default_files.append(path)
        logger.debug("merged plugin defaults from %s", path)

    # -- validation ------------------------------------------------------------------------------
    def where(self, path: tuple[str, ...]) -> str:
        """Where the value at ``path`` came from, for messages."""
        if _has_path(self.overrides, path):
            return "set with set_config"
        if self.config_file and _has_path(self.user_config, path):
            return f"in {self.config_file}"
        return "in the config"

    def validate(self, config: Mapping | None = None) -> None:
        """Check ``config`` (default: the current one); raise one ConfigError listing every problem.

        With ``general.dev_mode = true`` unknown keys and wrong types are warnings instead.
        """
        config = self.config if config is None else config
        errors, soft = check(
            config,
            self.defaults,
            where=self.where,
            moved=migrations.moved_keys(),
            plugin_tables=frozenset(self.plugin_tables),
        )
        source = str(self.config_file) if self.config_file else "the config"
        request_errors = check_data_request(config.get("data_request", {}), source)
        dev_mode = config.get("general", {}).get("dev_mode") is True
        if dev_mode:
            soft, errors = soft + errors, []
        for message in soft:
            warnings.warn(message, ConfigStrictnessWarning, stacklevel=3)
        errors += request_errors
        if errors:
            advice = (
                "Every valid key is documented in hyrax_default_config.toml: print one with "
                '`hyrax config KEY` or h.config_help("KEY").'
            )
            if not dev_mode:
                advice += " While developing, general.dev_mode = true turns unknown keys into warnings."
            problems = "\n".join(f"  - {e}" for e in errors)
            raise ConfigError(f"The config has {len(errors)} problem(s):\n{problems}\n{advice}")

    # -- updates ---------------------------------------------------------------------------------
    def set_config(self, key: str, value: Any, over_write: bool = False) -> None:
        """Set a dotted key (quote segments holding dots: ``"'torch.optim.Adam'.lr"``), validated.

        A table value is merged into the table already there (a ``[data_request]`` group is replaced);
        ``over_write=True`` (the published Hyrax's argument) replaces what you set there before instead,
        while keys you never set keep their defaults. On any problem the config is left as it was.
        """
        segments = split_key(key)
        if isinstance(value, Mapping):
            value = to_plain(value)
        update: dict = {}
        set_path(update, segments, value)
        messages = published.translate(update)
        if messages or not _has_path(update, tuple(segments)):
            # A published Hyrax key, read under its name here.
            _warn_published(messages, "set_config")
            if over_write:
                raise ConfigError(
                    f"set_config('{key}', ..., over_write=True) uses a published Hyrax key: "
                    + "; ".join(messages or ["rename it"])
                )
            for leaf_path, leaf_value in walk(update):
                if not isinstance(leaf_value, Mapping):
                    self.set_config(join_key(leaf_path), leaf_value)
            return
        saved = (copy.deepcopy(self.defaults), list(self.default_files), set(self.plugin_tables))
        saved_overrides = copy.deepcopy(self.overrides)
        if over_write:
            overrides = copy.deepcopy(self.overrides)
            set_path(overrides, segments, copy.deepcopy(value))
            self.overrides = overrides
        else:
            self.overrides = merge(self.overrides, update)
        for name in plugin_names(update):
            self._add_plugin_defaults(name)
        candidate = to_plain(self.config)
        try:
            existing = get_path(candidate, segments)
        except KeyError:
            existing = None
        whole_group = len(segments) == 2 and segments[0] == "data_request"
        if over_write:
            try:
                default = get_path(to_plain(self.defaults), segments)
            except KeyError:
                default = None
            fresh = (
                merge(default, value, tuple(segments))
                if isinstance(default, Mapping) and isinstance(value, Mapping)
                else value
            )
            set_path(candidate, segments, fresh)
        elif isinstance(value, Mapping) and isinstance(existing, Mapping) and not whole_group:
            set_path(candidate, segments, merge(existing, value, tuple(segments)))
        else:
            set_path(candidate, segments, value)
        # Plugin defaults sit under what is already set: only keys missing so far are added.
        candidate = merge(self.defaults, candidate)
        try:
            self.validate(candidate)
        except ConfigError:
            self.defaults, self.default_files, self.plugin_tables = saved
            self.overrides = saved_overrides
            raise
        # Keep the identity of the top-level table: a notebook may hold a reference to h.config.
        self.config.clear()
        self.config.update(to_config_dict(candidate))

    def resolved(self) -> ConfigDict:
        """The current config, checked, as a verb should see it.

        ``h.config`` may have been edited by hand since the last check (``h.config["split"] = {...}``, as
        the published Hyrax's examples do): keys the user left out of a replaced table keep their
        defaults, and published key names are read as their names here.
        """
        current = to_plain(self.config)
        _warn_published(published.translate(current), "the config")
        config = to_config_dict(merge(self.defaults, current))
        self.validate(config)
        return config

    def documentation(self):
        """The comments of every defaults file in use (packaged and plugins')."""
        from hyrax.config.help import Documentation

        docs = Documentation()
        for path in self.default_files:
            docs.add_file(path)
        return docs

    def help(self, key: str | None = None) -> str:
        """Documentation of a section or key (from the defaults files), with its current value."""
        docs = self.documentation()
        if not key:
            sections = sorted({join_key(p[:1]) for p in docs.section_text if p})
            return 'Config sections (print one with config_help("SECTION")):\n  ' + "\n  ".join(sections)
        segments = tuple(split_key(key))
        try:
            current = get_path(self.config, segments)
        except KeyError:
            current = None
        text = docs.describe(segments, None if isinstance(current, Mapping) else current)
        if text is None:
            raise ConfigError(f"No config section or key '{key}'.{did_you_mean(key, docs.known_paths())}")
        return text


def _warn_published(messages: list[str], source: str) -> None:
    from hyrax.errors import ConfigMigrationWarning

    for message in messages:
        warnings.warn(f"{source}: {message} (published Hyrax key)", ConfigMigrationWarning, stacklevel=4)


def _has_path(table: Mapping, path: tuple[str, ...]) -> bool:
    try:
        get_path(table, path)
    except KeyError:
        return False
    return True
