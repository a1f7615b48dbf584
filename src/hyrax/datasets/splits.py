"""Splits: which objects each data_request group uses, and the order training draws them in.

Groups whose primary dataset is the same (same class and data_location) share its objects: each gets
the fraction or count ``[split] <group>`` gives, disjoint from the others, from one seeded permutation
(per label class when ``split.stratify``); one group without a value takes the rest. ``infer`` takes
the first N objects in dataset order, unshuffled. A value that is a path loads a saved split.

Splits are saved as ``<group>_split.npz`` (the row indices) and ``split_config.toml`` in a run
directory, so a run can be repeated exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.errors import ConfigError, DataError

INFER_GROUP = "infer"


@dataclass
class Splits:
    """Row indices (into each group's provider) per group, and how they were made."""

    indices: dict[str, np.ndarray]
    seed: int
    record: dict[str, Any] = field(default_factory=dict)
    #: The run directory the split was saved in, if any.
    run_dir: Path | None = None

    def save(self, directory: str | Path) -> None:
        """Write ``<group>_split.npz`` per group and ``split_config.toml`` into ``directory``."""
        import tomlkit

        from hyrax.results.run_dir import write_npz_atomic, write_text_atomic

        directory = Path(directory)
        for group, indices in self.indices.items():
            write_npz_atomic(directory / f"{group}_split.npz", indices=indices)
        write_text_atomic(
            directory / "split_config.toml", tomlkit.dumps({"seed": self.seed, "groups": self.record})
        )


def source_of(spec: Mapping) -> tuple[str, str | None]:
    """What identifies a primary dataset's objects: its class and resolved data_location."""
    location = get_setting(spec, "data_location") if "data_location" in spec else None
    return spec["dataset_class"], str(Path(location).expanduser().resolve()) if location else None


def configured_seed(config: Mapping) -> int | None:
    """split.rng_seed, else data_set.seed; None when neither is set."""
    seed = get_setting(config, "split.rng_seed")
    return get_setting(config, "data_set.seed") if seed is None else seed


def split_seed(config: Mapping) -> int:
    seed = configured_seed(config)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**32))
    return int(seed)


def load_split_file(path: str | Path, group: str, length: int) -> np.ndarray:
    """Indices from a saved ``<group>_split.npz`` (or a run directory that holds one)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / f"{group}_split.npz"
    if not path.is_file():
        raise ConfigError(f"split.{group}: saved split '{path}' does not exist.")
    with np.load(path) as saved:
        indices = saved["indices"]
    if len(indices) and (indices.min() < 0 or indices.max() >= length):
        raise DataError(
            f"split.{group}: '{path}' holds indices up to {indices.max()}, but the dataset has {length} objects: "
            f"it was saved for other data."
        )
    return indices.astype(np.int64)


def _count(value: Any, group: str, length: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"split.{group} must be a fraction, a count or a path, got {value!r}.")
    if isinstance(value, float) and 0 < value <= 1:
        return int(math.floor(value * length + 1e-9))
    if isinstance(value, int) and 1 <= value <= length:
        return value
    raise ConfigError(
        f"split.{group} = {value!r}: use a fraction in (0, 1] or a whole count from 1 to {length} (the dataset's size)."
    )


def compute_splits(config: Mapping, providers: Mapping[str, Any], seed: int | None = None) -> Splits:
    """Indices for every group in ``providers`` ({group: DataProvider}); ``seed`` (default: the
    config's, see :func:`split_seed`) draws them."""
    split = config.get("split", {})
    seed = split_seed(config) if seed is None else seed
    indices: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {}
    by_source: dict[tuple, list[str]] = {}
    for group, provider in providers.items():
        length = len(provider)
        value = split.get(group)
        record[group] = {"dataset_length": length}
        if isinstance(value, str):
            indices[group] = load_split_file(value, group, length)
            record[group]["from_file"] = value
        elif group == INFER_GROUP:
            indices[group] = np.arange(
                length if value is None else _count(value, group, length), dtype=np.int64
            )
        else:
            spec = provider.request[provider.primary]
            by_source.setdefault(source_of(spec), []).append(group)
    for groups in by_source.values():
        provider = providers[groups[0]]
        indices.update(_partition(config, provider, groups, split, seed))
    for group in providers:
        record[group]["count"] = len(indices[group])
        if group in split and not isinstance(split[group], str):
            record[group]["value"] = split[group]
    return Splits(indices=indices, seed=seed, record=record)


def _partition(config, provider, groups: list[str], split: Mapping, seed: int) -> dict[str, np.ndarray]:
    length = len(provider)
    if len(groups) == 1 and groups[0] not in split:
        return {groups[0]: np.arange(length, dtype=np.int64)}
    counts = {g: _count(split[g], g, length) for g in groups if g in split}
    unset = [g for g in groups if g not in split]
    if len(unset) > 1:
        raise ConfigError(
            f"Groups {', '.join(groups)} share one dataset, but {', '.join(unset)} have no [split] value: set "
            f"all but one, e.g. [split] {unset[0]} = 0.2 (one group without a value takes the rest)."
        )
    taken = sum(counts.values())
    if taken > length:
        listing = ", ".join(f"{g} = {split[g]}" for g in counts)
        raise ConfigError(
            f"[split] asks for {taken} objects ({listing}) from a dataset of {length}: the fractions of groups "
            f"that share a dataset must add up to at most 1."
        )
    if unset:
        counts[unset[0]] = length - taken
    ordered = [g for g in groups if g in counts]
    rng = np.random.default_rng(seed)
    label_field = get_setting(config, "label.field")
    if config.get("split", {}).get("stratify") and label_field is None:
        raise ConfigError(
            "split.stratify = true needs label.field: the field that holds each object's class."
        )
    if config.get("split", {}).get("stratify"):
        labels = provider.datasets[provider.primary].column(label_field)
        return _stratified(labels, ordered, counts, length, rng)
    permutation = rng.permutation(length)
    result, start = {}, 0
    for group in ordered:
        result[group] = np.sort(permutation[start : start + counts[group]])
        start += counts[group]
    return result


def _stratified(labels, groups, counts, length, rng) -> dict[str, np.ndarray]:
    fractions = np.array([counts[g] / length for g in groups])
    bounds = np.cumsum(fractions)
    parts: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        edges = np.concatenate([[0], np.round(bounds * len(members)).astype(int)])
        for number, group in enumerate(groups):
            parts[group].append(members[edges[number] : edges[number + 1]])
    return {g: np.sort(np.concatenate(parts[g])).astype(np.int64) for g in groups}
