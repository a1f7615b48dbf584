"""Strict checking of a config against the merged defaults.

A key that the defaults do not have is an error naming the full dotted key and the closest valid one;
a value whose type differs from its default's (table vs scalar, string vs number...) is an error naming
both types. Exempt, because their keys are the user's own names:

* ``[split]`` groups, ``[label]``, ``[balance.distribution]``;
* keyword-argument tables: top-level tables named by a class path (``["torch.optim.SGD"]``) and
  ``kwargs`` / ``*_kwargs`` / ``*_options`` tables (``[reduce_dimensions.umap.kwargs]``,
  ``[data_set.HyraxHATSDataset.open_catalog_kwargs]``, ``[data_set.KafkaStreamDataset.consumer_options]``);
* plugin tables: a new table under ``[model]``, ``[data_set]``, ``[vector_db]`` or
  ``[reduce_dimensions]`` (``[model.MyNotebookModel]``); unknown keys inside a table that an external
  package's ``default_config.toml`` brought in are warnings, not errors;
* ``[data_request]``, which has its own schema (:mod:`hyrax.config.data_request`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from hyrax.config.keys import join_key, walk
from hyrax.plugins import closest

#: Sections in which a user (or an external package) adds tables named after their own classes.
PLUGIN_SECTIONS = frozenset({"model", "data_set", "vector_db", "reduce_dimensions"})

#: Tables whose keys are names the user chooses.
_USER_NAMED = {("split",), ("label",), ("balance", "distribution"), ("data_request",)}

#: Keys whose value must be one of a fixed set.
CHOICES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("general", "log_level"): ("debug", "info", "warning", "error", "critical"),
    ("data_set", "nan_mode"): ("auto", "zero", "quantile"),
    ("data_set", "normalize"): ("auto", "none", "standardize", "arcsinh", "percentile", "zscale"),
    ("data_set", "lightcurve", "normalize"): ("standardize", "median", True),
    ("data_set", "on_bad_object"): ("error", "skip"),
    ("data_set", "LSDBStreamDataset", "stream_type"): ("catalog", "infinite"),
    ("download", "type"): ("coadd", "coadd/bg"),
    ("outliers", "method"): ("knn", "isolation_forest"),
    ("visualize", "stretch"): ("asinh", "log", "zscale", "linear"),
    ("visualize", "notebook"): ("live", "static"),
    ("visualize", "color_scale"): ("auto", "category", "linear", "log", "rank"),
    ("atlas", "order"): ("max", "min"),
    ("atlas", "image_format"): ("webp", "png"),
    ("vector_db", "name"): ("lance", "chromadb", "qdrant"),
    ("data_set", "HyraxRandomDataset", "invalid_value_type"): ("nan", "inf", "-inf", "none"),
    ("model", "HyraxTs2Vec", "mask_mode"): ("binomial", "continuous", "all_true", "all_false", "mask_last"),
    ("model", "HyraxTs2Vec", "encoding_window"): ("full_series", "multiscale"),
    ("model", "HyraxTs2Vec", "normalize"): ("median_mad", "zscore"),
    ("train", "find_unused_parameters"): ("auto", True),  # or false
}

#: Keys whose value is "auto" or a whole number >= 0 (a count that Hyrax may choose).
AUTO_OR_COUNT: frozenset[tuple[str, ...]] = frozenset(
    {("data_loader", "num_workers"), ("atlas", "max_level")}
)

#: Keys that may be false (none) besides a value of their default's type, any value of it.
MAY_BE_FALSE: frozenset[tuple[str, ...]] = frozenset({("model", "HyraxTs2Vec", "band_field")})

Path = tuple[str, ...]


def kind_of(value: Any) -> str:
    """The TOML type name of a value, as messages name it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, datetime.date | datetime.time):
        return "date/time"
    return type(value).__name__


def is_free_form(table_path: Path) -> bool:
    """True when the keys of the table at ``table_path`` are the user's own names."""
    if not table_path:
        return False
    last = table_path[-1]
    if "." in table_path[0] or last == "kwargs" or last.endswith(("_kwargs", "_options")):
        return True
    return any(table_path[: len(prefix)] == prefix for prefix in _USER_NAMED)


def type_problem(default: Any, value: Any) -> str | None:
    """Why ``value`` cannot replace ``default``, or None when it can."""
    if default is False:  # "not set": any value may set it
        return None
    expected, got = kind_of(default), kind_of(value)
    if expected == got or (expected == "float" and got == "integer"):
        return None
    return (
        f"must be {article(expected)} (the default is {_show(default)}), got {_show(value)} ({article(got)})"
    )


def auto_or_count_problem(value: Any) -> str | None:
    """Why ``value`` is not "auto" or a whole number >= 0, or None when it is."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return None
    return f'must be "auto" or a whole number >= 0, got {_show(value)}'


def article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def suggestion(path: Path, defaults: Mapping, moved: Mapping[str, str]) -> str:
    """``" Did you mean 'x.y'?"``, or where the key moved to, or an empty string."""
    dotted = join_key(path)
    if dotted in moved:
        return f" It moved: use '{moved[dotted]}' instead."
    table: Any = defaults
    for segment in path[:-1]:
        table = table.get(segment, {}) if isinstance(table, Mapping) else {}
    siblings = list(table) if isinstance(table, Mapping) else []
    leaf = path[-1]
    match = closest(leaf, siblings)
    if match is not None:
        return f" Did you mean '{join_key((*path[:-1], match))}'?"
    everywhere = [p for p, _ in walk(defaults) if not is_free_form(p[:-1])]
    same_leaf = [p for p in everywhere if p[-1] == leaf]
    if same_leaf:
        return f" Did you mean '{join_key(same_leaf[0])}'?"
    match = closest(dotted, [join_key(p) for p in everywhere])
    return f" Did you mean '{match}'?" if match else ""


def check(
    config: Mapping,
    defaults: Mapping,
    *,
    where: Callable[[Path], str],
    moved: Mapping[str, str] = {},
    plugin_tables: frozenset[Path] = frozenset(),
) -> tuple[list[str], list[str]]:
    """Check ``config`` against ``defaults``; return (errors, warnings) as messages.

    ``where(path)`` says where a key came from ("in ./hyrax_config.toml"), for the messages.
    """
    errors: list[str] = []
    warnings: list[str] = []

    def visit(table: Mapping, default_table: Mapping, path: Path) -> None:
        for key, value in table.items():
            here = (*path, key)
            if key not in default_table:
                if is_free_form(path) or _is_plugin_table(here, value):
                    continue
                message = (
                    f"Unknown config key '{join_key(here)}' ({where(here)})."
                    f"{suggestion(here, defaults, moved)}"
                )
                in_plugin_table = any(here[: len(t)] == t for t in plugin_tables)
                (warnings if in_plugin_table else errors).append(message)
                continue
            default = default_table[key]
            # false turns off a key with a choice of strings ("nan_mode = false": stop on NaN); a choice may
            # be true too ("[data_set.lightcurve] normalize = true")
            off = (isinstance(value, bool) and here in CHOICES) or (value is False and here in MAY_BE_FALSE)
            problem = None if off else type_problem(default, value)
            if here in AUTO_OR_COUNT:
                problem = auto_or_count_problem(value)
            if problem:
                errors.append(f"Config key '{join_key(here)}' ({where(here)}) {problem}.")
                continue
            allowed = CHOICES.get(here)
            if allowed and value is not False and value not in allowed:
                errors.append(
                    f"Config key '{join_key(here)}' ({where(here)}) must be one of "
                    f"{', '.join(repr(a) for a in allowed)}, got {_show(value)}."
                )
            if isinstance(value, Mapping) and isinstance(default, Mapping) and here != ("data_request",):
                visit(value, default, here)

    visit(config, defaults, ())
    return errors, warnings


def _is_plugin_table(path: Path, value: Any) -> bool:
    """A new table directly under a plugin section, or a top-level table named by a class path."""
    if not isinstance(value, Mapping):
        return False
    return (len(path) == 2 and path[0] in PLUGIN_SECTIONS) or (len(path) == 1 and "." in path[0])
