"""``DataProvider``: one ``[data_request]`` group -> samples and numpy batches.

It builds each dataset of the group with its ``dataset_config``, resolves the requested fields (default:
every getter), and lines secondary datasets up with the primary one: by index, or by a left outer join
of ``join_field`` onto the primary ids (an unmatched row is missing and flagged in the batch's
``<name>__matched`` mask).

>>> from hyrax.config import ConfigManager
>>> manager = ConfigManager()
>>> manager.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
>>> provider = DataProvider(manager.config, "train")
>>> sample = provider[0]
>>> sorted(sample)
['data', 'object_id']
>>> batch = provider.collate([provider[0], provider[1]])
>>> batch["data"]["image"].shape
(2, 2, 5, 5)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.config.data_request import primary_dataset
from hyrax.datasets.collate import collate_values
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.joins import build_join
from hyrax.errors import ConfigError, DataError
from hyrax.plugins import DATASETS, did_you_mean

logger = logging.getLogger(__name__)

DEFAULT_ID_FIELD = "object_id"


def dataset_config(config: Mapping, dataset_class: str, overrides: Mapping | None) -> dict:
    """A copy of ``config`` with one dataset's ``dataset_config`` applied.

    A key that ``[data_set.<dataset_class>]`` has goes there; any other goes to ``[data_set]``.
    """
    result = copy.deepcopy(config)
    if overrides:
        data_set = result.setdefault("data_set", {})
        own = data_set.get(dataset_class) if isinstance(data_set.get(dataset_class), dict) else None
        for key, value in overrides.items():
            (own if own is not None and key in own else data_set)[key] = copy.deepcopy(value)
    return result


def build_dataset(config: Mapping, spec: Mapping, where: str) -> HyraxDataset:
    """Construct the dataset one ``[data_request]`` entry describes."""
    from hyrax.datasets import load_builtins

    load_builtins()
    cls = DATASETS.get(spec["dataset_class"])
    location = get_setting(spec, "data_location") if "data_location" in spec else None
    try:
        dataset = cls(dataset_config(config, spec["dataset_class"], spec.get("dataset_config")), location)
    except (DataError, ConfigError):
        raise
    except TypeError as error:
        raise DataError(
            f"{where}: could not construct {cls.__name__}: {error}. A dataset's constructor takes "
            f"(config, data_location=None)."
        ) from error
    if not hasattr(dataset, "__len__"):
        raise DataError(
            f"{where}: {cls.__name__} has no __len__: add `def __len__(self)` returning its size."
        )
    return dataset


class DataProvider:
    """Samples of one data_request group; ``provider[i]`` -> ``{name: {field: value}, "object_id": str}``.

    Args:
        config: the resolved config.
        group: the data_request group ("train", "infer"...).
    """

    def __init__(self, config: Mapping, group: str):
        request = config.get("data_request", {})
        if group not in request:
            groups = ", ".join(request) or "(none)"
            raise ConfigError(
                f"The config has no [data_request.{group}] group.{did_you_mean(group, request)} Groups: {groups}. "
                f'Add one, e.g. [data_request.{group}.data] with dataset_class = "HyraxRandomDataset".'
            )
        self.config = config
        self.group = group
        self.request = request[group]
        self.primary = primary_dataset(self.request)
        self.primary_id_field = self.request[self.primary].get("primary_id_field", DEFAULT_ID_FIELD)
        self.datasets: dict[str, HyraxDataset] = {}
        self.fields: dict[str, list[str]] = {}
        for name, spec in self.request.items():
            where = f"data_request.{group}.{name}"
            dataset = build_dataset(config, spec, where)
            self.datasets[name] = dataset
            self.fields[name] = self._resolve_fields(dataset, spec, where)
        self._check_primary_ids()
        self._check_unique_ids()
        self.rows: dict[str, np.ndarray | None] = {name: None for name in self.datasets}
        for name, spec in self.request.items():
            if name != self.primary:
                self.rows[name] = self._align(name, spec)
        self.nan_mode = get_setting(config, "data_set.nan_mode")
        self.nan_quantile = config["data_set"]["nan_quantile"]
        self.skip_bad = config["data_set"]["on_bad_object"] == "skip"
        self._id_getter = self.datasets[self.primary].getter(self.primary_id_field)
        self.augment_seed = int(get_setting(config, "data_set.seed") or 0)
        self.epoch = 0
        self._plan = [
            (name, [(field, self._field_getter(name, field)) for field in self.fields[name]], self.rows[name])
            for name in self.datasets
        ]
        self.skipped: list[tuple[str, str]] = []

    # -- construction helpers ----------------------------------------------------------------------
    def _resolve_fields(self, dataset: HyraxDataset, spec: Mapping, where: str) -> list[str]:
        available = dataset.fields()
        requested = get_setting(spec, "fields") if "fields" in spec else None
        if requested is None:
            return available
        missing = [f for f in requested if f not in available]
        if missing:
            hints = "".join(did_you_mean(f, available) for f in missing)
            raise DataError(
                f"{where} asks for field(s) {', '.join(missing)} that {type(dataset).__name__} does not "
                f"provide.{hints} Its fields: {', '.join(available) or '(none)'}."
            )
        return list(requested)

    def _check_primary_ids(self) -> None:
        dataset = self.datasets[self.primary]
        where = f"data_request.{self.group}.{self.primary}"
        if self.primary_id_field not in dataset.fields():
            raise DataError(
                f"{where}: {type(dataset).__name__} has no getter for its primary id field "
                f"'{self.primary_id_field}'. Add `def get_{self.primary_id_field}(self, idx)` returning a "
                f"unique string per object, or set primary_id_field to one of: {', '.join(dataset.fields())}."
            )

    def _check_unique_ids(self) -> None:
        """Duplicate primary ids are an error, checked wherever the ids are a column (a catalog): for a
        dataset whose ids come only from per-row getters this would cost a pass over the data, so
        hyrax.testing.check_dataset checks those."""
        dataset = self.datasets[self.primary]
        has_column = self.primary_id_field in getattr(dataset, "_metadata_columns", {}) or (
            type(dataset).column is not HyraxDataset.column
        )
        if not has_column:
            return
        import pandas as pd

        ids = pd.Index(self.ids())
        if not ids.is_unique:
            repeated = ids[ids.duplicated()].unique()
            raise DataError(
                f"data_request.{self.group}.{self.primary}: {len(repeated)} object id(s) occur more than once "
                f"(e.g. {', '.join(map(str, repeated[:5]))}); every object needs its own id. Remove the duplicates or "
                f"choose another primary_id_field."
            )

    def _align(self, name: str, spec: Mapping) -> np.ndarray | None:
        dataset = self.datasets[name]
        where = f"data_request.{self.group}.{name}"
        if "join_field" not in spec:
            if len(dataset) != len(self.datasets[self.primary]):
                raise DataError(
                    f"{where} is aligned by index with the primary dataset '{self.primary}', but has "
                    f"{len(dataset)} rows against {len(self.datasets[self.primary])}. Give it a join_field "
                    f"to match rows by id instead."
                )
            return None
        primary_ids = self.ids()
        join_field = spec["join_field"]
        if join_field not in dataset.fields():
            raise DataError(
                f"{where}: join_field '{join_field}' is not a field of {type(dataset).__name__}."
                f"{did_you_mean(join_field, dataset.fields())} Its fields: {', '.join(dataset.fields())}."
            )
        rows = build_join(primary_ids, dataset.column(join_field), where, self.config)
        matched = int((rows >= 0).sum())
        logger.info("%s: joined on %s, %d of %d rows matched", where, join_field, matched, len(rows))
        return rows

    def _field_getter(self, name: str, field: str):
        """The getter, wrapped by the dataset's augment_<field>(data, idx, rng_seed) when asked for."""
        dataset = self.datasets[name]
        getter = dataset.getter(field)
        augment = self.request[name].get("augment", False)
        if isinstance(augment, list):
            for listed in augment:
                if listed not in self.fields[name] or not callable(
                    getattr(dataset, f"augment_{listed}", None)
                ):
                    raise DataError(
                        f"data_request.{self.group}.{name}.augment lists '{listed}', but {type(dataset).__name__} "
                        f"has no augment_{listed}(self, data, idx, rng_seed) method for a requested field."
                    )
        wanted = augment is True or (isinstance(augment, list) and field in augment)
        hook = getattr(dataset, f"augment_{field}", None)
        if not wanted or not callable(hook):
            return getter

        def augmented(row: int):
            # A different, reproducible seed for every (seed, epoch, object).
            seed = (self.augment_seed * 1_000_003 + self.epoch * 7_919 + int(row) * 2_654_435_761) % 2**32
            return hook(getter(row), row, seed)

        return augmented

    def start_epoch(self, verb: str, epoch: int) -> None:
        """Tell the datasets an epoch of ``verb`` starts (``on_epoch_start``) and re-seed augmentation."""
        self.epoch = int(epoch)
        for dataset in self.datasets.values():
            hook = getattr(dataset, "on_epoch_start", None)
            if callable(hook):
                hook(verb)

    # -- access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.datasets[self.primary])

    def ids(self) -> np.ndarray:
        """The primary object ids, as strings, in dataset order."""
        column = self.datasets[self.primary].column(self.primary_id_field)
        return column.astype(str) if column.dtype.kind != "U" else column

    def rows_of(self, object_ids) -> np.ndarray:
        """Row of each object id in the primary dataset (-1 where it is not there), via a hash index."""
        import pandas as pd

        return pd.Index(self.ids()).get_indexer(np.asarray(object_ids).astype(str))

    def metadata_for(self, object_ids) -> dict[str, np.ndarray]:
        """The primary dataset's 1-D metadata columns for these object ids (rows not found get row 0's
        values; check ``rows_of`` where that matters)."""
        rows = self.rows_of(object_ids)
        found = self.datasets[self.primary].metadata(np.maximum(rows, 0))
        return {k: v for k, v in found.items() if k != "object_id" and getattr(v, "ndim", 0) == 1}

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        index = int(index)
        object_id = str(self._id_getter(index))
        sample: dict[str, Any] = {"object_id": object_id}
        try:
            for name, getters, rows in self._plan:
                if rows is None:
                    row = index
                else:
                    row = int(rows[index])
                    sample[f"{name}__matched"] = row >= 0
                    if row < 0:
                        sample[name] = {field: None for field, _ in getters}
                        continue
                values = {}
                for field, getter in getters:
                    value = getter(row)
                    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                        value = self._finite(value, object_id, name, field)
                    values[field] = value
                sample[name] = values
        except DataError as error:
            if not self.skip_bad:
                raise
            logger.warning("skipped object %s: %s", object_id, error)
            self.skipped.append((object_id, str(error)))
            return None
        return sample

    def _finite(self, value: np.ndarray, object_id: str, name: str, field: str) -> np.ndarray:
        if np.isfinite(value.sum()):
            return value
        bad = ~np.isfinite(value)
        if not bad.any():  # the sum overflowed; every value is finite
            return value
        if self.nan_mode is None:
            raise DataError(
                f"Object {object_id}: field '{name}.{field}' has {int(bad.sum())} NaN/inf value(s) of "
                f'{value.size}. Set data_set.nan_mode = "zero" or "quantile" to replace them, or '
                f'data_set.on_bad_object = "skip" to leave such objects out.'
            )
        value = value.copy()
        if self.nan_mode == "zero" or bad.all():
            value[bad] = 0
        else:
            value[bad] = np.quantile(value[~bad], self.nan_quantile)
        return value

    def collate(self, samples: Sequence[dict[str, Any] | None], stack=np.stack) -> dict[str, Any]:
        """A numpy batch: ``{name: {field: array}, "object_id": array, "<name>__matched": array}``.

        ``stack`` joins same-shape arrays (see :func:`~hyrax.datasets.collate.collate_values`)."""
        samples = [s for s in samples if s is not None]
        if not samples:
            return {}
        object_ids = [s["object_id"] for s in samples]
        batch: dict[str, Any] = {"object_id": np.asarray(object_ids)}
        for name, dataset in self.datasets.items():
            items = [s[name] for s in samples]
            if callable(getattr(dataset, "collate", None)):
                batch[name] = dataset.collate(items)
            else:
                batch[name] = {
                    field: _collate_field(dataset, field, [item[field] for item in items], object_ids, stack)
                    for field in self.fields[name]
                }
            if self.rows[name] is not None:
                batch[f"{name}__matched"] = np.asarray([s[f"{name}__matched"] for s in samples])
        return batch

    # -- reporting -------------------------------------------------------------------------------
    def summary(self) -> str:
        """A few readable lines: size, datasets, fields and the shape of each field."""
        lines = [f"[{self.group}] {len(self)} objects, id field '{self.primary_id_field}'"]
        first = self[0] if len(self) else None
        for name, dataset in self.datasets.items():
            role = (
                "primary"
                if name == self.primary
                else ("joined" if self.rows[name] is not None else "aligned")
            )
            location = getattr(dataset, "data_location", None)
            lines.append(
                f"  {name} ({role}): {type(dataset).__name__}, {len(dataset)} rows, from {location or '-'}"
            )
            for field in self.fields[name]:
                value = first[name][field] if first else None
                lines.append(f"    {field}: {_describe(value)}")
            if self.rows[name] is not None:
                lines.append(f"    matched: {int((self.rows[name] >= 0).sum())} of {len(self)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def _collate_field(dataset: HyraxDataset, field: str, values: list, object_ids: list[str], stack) -> Any:
    custom = getattr(dataset, f"collate_{field}", None)
    if callable(custom):
        return custom(values)
    return collate_values(values, field, object_ids, stack)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.shape} {value.dtype}"
    if value is None:
        return "missing"
    if isinstance(value, np.generic):
        return f"{value.dtype} (e.g. {value.item()!r})"
    return f"{type(value).__name__} (e.g. {value!r})"


def providers_for(config: Mapping, groups: Sequence[str] | None = None) -> dict[str, DataProvider]:
    """``{group: DataProvider}`` for ``groups`` (default: every group). No [data_request] is an error
    that shows how to write one and lists the datasets there are."""
    request = config.get("data_request") or {}
    if not request:
        from hyrax.datasets import load_builtins
        from hyrax.plugins import DATASETS

        load_builtins()
        raise ConfigError(
            "The config has no [data_request]: say which data to use, e.g.\n"
            "    [data_request.train.data]\n"
            '    dataset_class = "DecalsRingsDataset"\n'
            f"Datasets: {', '.join(DATASETS.names())} (or the import path of your own class)."
        )
    return {group: DataProvider(config, group) for group in (groups or list(request))}
