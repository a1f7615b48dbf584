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
from dataclasses import dataclass
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.config.data_request import primary_dataset
from hyrax.datasets.collate import collate_values
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.ids import IdIndex, StringColumn, arrow_strings
from hyrax.datasets.joins import build_join, secondary_index
from hyrax.errors import ConfigError, DataError
from hyrax.plugins import DATASETS, did_you_mean

logger = logging.getLogger(__name__)

DEFAULT_ID_FIELD = "object_id"
#: Primary rows whose joined table rows are read at once when batches go in order (see _prefetch).
READ_AHEAD = 65536


def dataset_config(config: Mapping, dataset_class: str, overrides: Mapping | None) -> dict:
    """A copy of ``config`` with one dataset's ``dataset_config`` applied.

    - a table named after a dataset class (the published nested form, ``{"HyraxRandomDataset": {...}}``)
      is merged into ``[data_set.<that class>]``, key by key;
    - a key that ``[data_set.<dataset_class>]`` has goes there; one that ``[data_set]`` has, there;
    - any other key is set at the config's root, where the published Hyrax puts it (a dataset of
      yours reads it as ``config["n_objects"]``); a near-miss of a known key is logged with the key it
      resembles.
    """
    result = copy.deepcopy(config)
    if not overrides:
        return result
    data_set = result.setdefault("data_set", {})
    own = data_set.get(dataset_class) if isinstance(data_set.get(dataset_class), dict) else None
    for key, value in overrides.items():
        value = copy.deepcopy(value)
        nested = data_set.get(key)
        if isinstance(value, Mapping) and (key in DATASETS or isinstance(nested, dict)):
            target = data_set.setdefault(key, {})
            if not isinstance(target, dict):
                target = data_set[key] = {}
            target.update(value)
        elif own is not None and key in own:
            own[key] = value
        elif key in data_set:
            data_set[key] = value
        else:
            known = [*(own or {}), *(k for k, v in data_set.items() if not isinstance(v, dict))]
            hint = did_you_mean(key, known)
            if hint:
                logger.warning(
                    "dataset_config key '%s' of %s is not a [data_set] key; it is set at the config root "
                    "(as the published Hyrax does).%s",
                    key,
                    dataset_class,
                    hint,
                )
            result[key] = value
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

    #: What ``hyrax prepare`` found reading this group's objects (a ``hyrax.datasets.check.CheckReport``),
    #: None when it did not check them.
    check_report: Any = None

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
        self.datasets: dict[str, HyraxDataset] = {}
        self.fields: dict[str, list[str]] = {}
        self._id_column_cache: Any = None
        self._windows: dict[str, tuple] = {}  # rows read ahead per dataset (see _prefetch)
        self._id_index: IdIndex | None = None
        for name, spec in self.request.items():
            where = f"data_request.{group}.{name}"
            dataset = build_dataset(config, spec, where)
            self.datasets[name] = dataset
            self.fields[name] = self._resolve_fields(dataset, spec, where)
        # A dataset may name its own id (an alert archive: alert_id, as an object has many alerts).
        default_id = getattr(self.datasets[self.primary], "default_id_field", DEFAULT_ID_FIELD)
        self.primary_id_field = self.request[self.primary].get("primary_id_field", default_id)
        self._check_primary_ids()
        self._id_getter = self.datasets[self.primary].getter(self.primary_id_field)
        self._check_unique_ids()
        self.rows: dict[str, np.ndarray | None] = {name: None for name in self.datasets}
        for name, spec in self.request.items():
            if name != self.primary:
                self.rows[name] = self._align(name, spec)
        # "auto": image datasets mend their images themselves (hyrax.datasets.images); other fields stop.
        nan_mode = get_setting(config, "data_set.nan_mode")
        self.nan_mode = None if nan_mode == "auto" else nan_mode
        self.nan_quantile = config["data_set"]["nan_quantile"]
        self.skip_bad = config["data_set"]["on_bad_object"] == "skip"
        self.augment_seed = int(get_setting(config, "data_set.seed") or 0)
        # Augmented values a dataset's augment_cache_key names, kept for reuse (hyrax.datasets.augment_cache).
        self.augment_cache = None
        if config["data_set"].get("use_cache", True):
            from hyrax.datasets.augment_cache import AugmentCache

            self.augment_cache = AugmentCache(float(config["data_set"].get("augment_cache_mb", 512)) * 2**20)
        self.epoch = 0
        self._plan_reads()
        #: (object id, reason, row) of objects skipped by this process since take_skipped last ran.
        self.skipped: list[tuple[str, str, int]] = []

    # -- construction helpers ----------------------------------------------------------------------
    def _plan_reads(self) -> None:
        """How each field of each dataset is read: by its getter per object, or a batch at a time (tables,
        in the main process), and which of them take the image path here."""
        self._plan = [
            (name, [(field, self._field_getter(name, field)) for field in self.fields[name]], self.rows[name])
            for name in self.datasets
        ]
        # Fields a batch reads at once (a table's columns, structs and resampled light curves, not
        # overridden by a getter of a subclass's own),
        # and their augmentation hooks; tables are read in the main process only (see prefetch).
        self._batch_fields = {
            name: {
                field: self._augmentation(name, field)
                for field in self.fields[name]
                if callable(getattr(dataset, "read_rows", None))
                and field in getattr(dataset, "table_fields", ())
                and (
                    getattr(dataset, "_reads_own_getters", False)
                    or not callable(getattr(type(dataset), f"get_{field}", None))
                )
            }
            for name, dataset in self.datasets.items()
        }
        # A table's ids are read with the batch in the main process, requested as a field or not (a
        # DataLoader worker must not read the table).
        self._ids_from_table = self._table_ids(self.datasets[self.primary])
        # Image fields a table dataset reads a batch at a time (a Multimodal Universe image's flux) take the
        # one image path here, per object, as the image datasets' getters do (hyrax.datasets.images).
        self._image_fields = {
            name: dict(getattr(dataset, "image_fields", None) or {})
            for name, dataset in self.datasets.items()
        }

    def _resolve_fields(self, dataset: HyraxDataset, spec: Mapping, where: str) -> list[str]:
        available = dataset.fields()
        requested = get_setting(spec, "fields") if "fields" in spec else None
        if requested is None:
            defaults = getattr(dataset, "default_fields", None)
            return list(defaults()) if callable(defaults) else available
        missing = [f for f in requested if f not in available]
        if missing:
            hints = "".join(did_you_mean(f, _offered(dataset)) for f in missing)
            raise DataError(
                f"{where} asks for field(s) {', '.join(missing)} that {type(dataset).__name__} does not "
                f"provide.{hints}{_listing(dataset)}"
            )
        return list(requested)

    def _check_primary_ids(self) -> None:
        dataset = self.datasets[self.primary]
        where = f"data_request.{self.group}.{self.primary}"
        if self.primary_id_field not in dataset.fields():
            raise DataError(
                f"{where}: {type(dataset).__name__} has no getter for its primary id field "
                f"'{self.primary_id_field}'.{did_you_mean(self.primary_id_field, _offered(dataset))} Set "
                f"primary_id_field to a column of unique ids, or add `def get_{self.primary_id_field}(self, "
                f"idx)` returning a unique string per object.{_listing(dataset)}"
            )

    def _check_unique_ids(self) -> None:
        """Duplicate primary ids are an error, checked wherever the ids are a column (a catalog): for a
        dataset whose ids come only from per-row getters this would cost a pass over the data, so
        hyrax.testing.check_dataset checks those."""
        if self._id_column() is None and not self._table_ids(self.datasets[self.primary]):
            return
        count, examples = self.id_index().duplicates()
        if count:
            raise DataError(
                f"data_request.{self.group}.{self.primary}: {count} object id(s) occur more than once "
                f"(e.g. {', '.join(examples)}); every object needs its own id. Remove the duplicates or "
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
        join_field = spec["join_field"]
        if join_field not in dataset.fields():
            raise DataError(
                f"{where}: join_field '{join_field}' is not a field of {type(dataset).__name__}."
                f"{did_you_mean(join_field, _offered(dataset))}{_listing(dataset)}"
            )
        rows = build_join(self.id_batches(), secondary_index(dataset, join_field, where), where, len(self))
        matched = int((rows >= 0).sum())
        logger.info("%s: joined on %s, %d of %d rows matched", where, join_field, matched, len(rows))
        return rows

    def _field_getter(self, name: str, field: str):
        """The getter, wrapped by the dataset's augment_<field>(data, idx, rng_seed) when asked for."""
        getter = self.datasets[name].getter(field)
        hook = self._augmentation(name, field)
        if hook is None:
            return getter
        return lambda row: self._augment(hook, getter(row), row)

    def _augmentation(self, name: str, field: str):
        """The dataset's augment_<field> hook when the request asks for it, else None."""
        dataset = self.datasets[name]
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
        hook = getattr(dataset, f"augment_{field}", None)
        return hook if _augmented(self.request[name], field) and callable(hook) else None

    def _augment(self, hook, value, row: int):
        # A different, reproducible seed for every (seed, epoch, object).
        seed = (self.augment_seed * 1_000_003 + self.epoch * 7_919 + int(row) * 2_654_435_761) % 2**32
        if self.augment_cache is not None:
            return self.augment_cache.augmented(hook, value, row, seed)
        return hook(value, row, seed)

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

    def _id_column(self):
        """The primary ids as one column when the dataset has them so (a catalog, a results table):
        read once; None for a dataset whose ids come from a per-row getter only."""
        if self._id_column_cache is None:
            dataset = self.datasets[self.primary]
            field = self.primary_id_field
            own_getter = callable(getattr(type(dataset), f"get_{field}", None))
            in_table = field in getattr(dataset, "_metadata_columns", {}) and not own_getter
            if callable(getattr(dataset, "column_batches", None)) and field in getattr(
                dataset, "_columns", ()
            ):
                self._id_column_cache = False  # a table: ids streamed and read by row, never all held
            elif in_table or type(dataset).column is not HyraxDataset.column:
                column = dataset.column(field)
                self._id_column_cache = column if isinstance(column, StringColumn) else StringColumn(column)
            else:
                self._id_column_cache = False
        return self._id_column_cache or None

    def ids_at(self, rows) -> np.ndarray:
        """The primary ids of these rows (str)."""
        rows = np.asarray(rows, dtype=np.int64)
        column = self._id_column()
        if column is not None:
            return column[rows]
        dataset = self.datasets[self.primary]
        if self._table_ids(dataset):
            return np.asarray(dataset.read_rows(rows, [self.primary_id_field])[self.primary_id_field]).astype(
                str
            )
        return np.asarray([str(self._id_getter(int(row))) for row in rows], dtype=str)

    def _table_ids(self, dataset) -> bool:
        return callable(getattr(dataset, "column_batches", None)) and self.primary_id_field in getattr(
            dataset, "_columns", ()
        )

    def id_batches(self, batch_size: int = 65536):
        """The primary ids in row order, a batch at a time (Arrow strings): all of them, never held at
        once unless the dataset holds them itself."""
        column = self._id_column()
        dataset = self.datasets[self.primary]
        if column is None and self._table_ids(dataset):
            yield from dataset.column_batches(self.primary_id_field, batch_size)
            return
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            if column is not None:
                yield column.arrow.slice(start, stop - start)
            else:
                yield arrow_strings([str(self._id_getter(row)) for row in range(start, stop)])

    def ids(self) -> np.ndarray:
        """The primary object ids, as strings, in dataset order (every one, in memory: prefer
        :meth:`id_batches` or :meth:`ids_at` at scale)."""
        column = self._id_column()
        if column is not None:
            return np.asarray(column)
        parts = [batch.to_numpy(zero_copy_only=False).astype(str) for batch in self.id_batches()]
        return np.concatenate(parts) if parts else np.empty(0, dtype=str)

    def id_index(self) -> IdIndex:
        """An index of the primary ids (built once, on first use: 8 bytes an object)."""
        if self._id_index is None:
            self._id_index = IdIndex.build(self.id_batches(), self.ids_at, count=len(self))
        return self._id_index

    def rows_of(self, object_ids, hints=None) -> np.ndarray:
        """Row of each object id in the primary dataset (-1 where it is not there), in O(log N).
        ``hints``: a likely row for each id (e.g. its row in a results table); a right hint costs one
        id read and no index."""
        wanted = arrow_strings(object_ids)
        found = np.full(len(wanted), -1, dtype=np.int64)
        todo = np.ones(len(wanted), dtype=bool)
        if hints is not None:
            hints = np.asarray(hints, dtype=np.int64)
            usable = np.flatnonzero((hints >= 0) & (hints < len(self)))
            if len(usable):
                same = self.ids_at(hints[usable]) == wanted.take(usable).to_numpy(
                    zero_copy_only=False
                ).astype(str)
                found[usable[same]] = hints[usable[same]]
                todo[usable[same]] = False
        if todo.any():
            found[todo] = self.id_index().rows_of(wanted.filter(todo))
        return found

    def metadata_rows(self, rows) -> dict[str, np.ndarray]:
        """The 1-D metadata columns of these primary rows: the primary dataset's, then those of every
        joined or aligned dataset (as ``column``, or ``<name>.<column>`` where the name is taken);
        an unmatched row of a joined catalog gives NaN (numbers) or None (text)."""
        rows = np.asarray(rows, dtype=np.int64)
        safe = np.clip(rows, 0, max(len(self) - 1, 0))
        found = {
            k: v
            for k, v in self.datasets[self.primary].metadata(safe).items()
            if k != "object_id" and getattr(v, "ndim", 0) == 1
        }
        for name, dataset in self.datasets.items():
            if name == self.primary:
                continue
            joined = self.rows[name]
            their = safe if joined is None else joined[safe].astype(np.int64)
            unmatched = their < 0
            skip = {"object_id", self.request[name].get("join_field")}
            names = getattr(dataset, "_scalars", None) or getattr(dataset, "_metadata_columns", {})
            wanted = [column for column in names if column not in skip]  # the join field is the object id
            if not wanted:
                continue
            for column, values in dataset.metadata(np.maximum(their, 0), wanted).items():
                if column in skip or getattr(values, "ndim", 0) != 1:
                    continue
                if unmatched.any():
                    values = _blank(values, unmatched)
                found[column if column not in found else f"{name}.{column}"] = values
        return found

    def metadata_for(self, object_ids) -> dict[str, np.ndarray]:
        """:meth:`metadata_rows` for these object ids (rows not found get row 0's primary values;
        check ``rows_of`` where that matters)."""
        return self.metadata_rows(self.rows_of(object_ids))

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        return self._sample(int(index))

    @property
    def reads_tables(self) -> bool:
        """True when some of its fields are read from tables (which only the main process may read:
        Lance is not fork-safe, so DataLoader workers get those values from :meth:`prefetch`)."""
        return any(self._batch_fields.values())

    def prefetch(self, indices) -> Prefetched:
        """What a batch needs from tables, read now (in the calling process) in one read per table."""
        indices = np.asarray(indices, dtype=np.int64)
        ids = self.ids_at(indices) if self._ids_from_table and len(indices) else None
        return Prefetched(indices, self._prefetch(indices), ids)

    def __getitems__(self, request) -> list[dict[str, Any] | None]:
        """The samples of a whole batch (torch's DataLoader asks this way): a list of rows, or a
        :class:`Prefetched` batch whose table values were read by the main process."""
        prefetched = request if isinstance(request, Prefetched) else self.prefetch(request)
        return [
            self._sample(int(index), prefetched, position)
            for position, index in enumerate(prefetched.indices)
        ]

    def _prefetch(self, indices: np.ndarray) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
        """{dataset name: (slot in the values of each batch position (-1: unmatched), {field: values})}
        for the fields a batch reads at once.

        A random read costs more per read than per row (a Lance take of 1,024 rows ~14 us a row, of
        65,536 rows ~0.8 us), so when a batch's rows lie near one another (inference goes in order)
        the next :data:`READ_AHEAD` primary rows are read at once and kept for the batches that follow."""
        found = {}
        for name, getters, rows in self._plan:
            fields = [field for field, _ in getters if field in self._batch_fields.get(name, {})]
            if not fields or not len(indices):
                continue
            low, high = int(indices.min()), int(indices.max())
            try:
                if high - low <= 4 * len(indices):  # near one another: read ahead
                    window = self._windows.get(name)
                    if window is None or low < window[0] or high >= window[1]:
                        stop = max(high + 1, min(len(self), low + READ_AHEAD))
                        window = self._windows[name] = self._read(name, rows, fields, np.arange(low, stop))
                    slots, values = window[2][indices - window[0]], window[3]
                else:
                    _, _, slots, values = self._read(name, rows, fields, indices)
            except (DataError, IndexError):  # read row by row instead, so the error names its object
                continue
            used = slots >= 0  # just this batch's values travel on (to a worker process)
            batch = {field: _at(column, slots[used]) for field, column in values.items()}
            found[name] = (np.where(used, np.cumsum(used) - 1, -1), batch)
        return found

    def _read(self, name: str, rows, fields: list[str], primary: np.ndarray):
        """(first primary row, last + 1, slot in the values of each of ``primary`` (-1: unmatched),
        {field: values}) for these primary rows, in one read."""
        their = primary if rows is None else rows[primary].astype(np.int64)
        valid = their >= 0
        # A joined table's join field holds the primary id wherever it matched: no need to read it.
        known = self.request[name].get("join_field") if rows is not None else None
        values = self.datasets[name].read_rows(their[valid], [f for f in fields if f != known])
        if known in fields:
            values[known] = self.ids_at(primary[valid])
        slots = np.where(valid, np.cumsum(valid) - 1, -1)
        return int(primary[0]), int(primary[-1]) + 1, slots, values

    def _sample(
        self, index: int, prefetched: Prefetched | None = None, position: int = 0
    ) -> dict[str, Any] | None:
        found = prefetched.values if prefetched is not None else {}
        if prefetched is not None and prefetched.ids is not None:
            object_id = str(prefetched.ids[position])
        else:
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
                slots, read = found.get(name, (None, {}))
                hooks = self._batch_fields[name]
                values = {}
                for field, getter in getters:
                    if field in read:
                        value = _at(read[field], slots[position])
                        if hooks.get(field) is not None:
                            value = self._augment(hooks[field], value, row)
                    else:
                        value = self._get(getter, row, object_id, name, field)
                    if field in self._image_fields[name]:
                        value = self._image(name, field, value, object_id)
                    if isinstance(value, np.ndarray | dict):
                        value = self._finite(value, object_id, name, field)
                    elif isinstance(value, np.generic):
                        value = value.item() if value.dtype.kind != "U" else str(value)
                    values[field] = value
                sample[name] = values
        except DataError as error:
            if not self.skip_bad:
                raise
            logger.warning("skipped object %s: %s", object_id, error)
            self.skipped.append((object_id, str(error), index))
            return None
        return sample

    def _image(self, name: str, field: str, value: Any, object_id: str) -> Any:
        """``value`` through its dataset's image pipeline (a dict field: its image child)."""
        pipeline, child = self.datasets[name].image_pipeline, self._image_fields[name][field]
        if child is None:
            return pipeline(value, object_id) if isinstance(value, np.ndarray) else value
        if isinstance(value, dict) and isinstance(value.get(child), np.ndarray):
            return {**value, child: pipeline(value[child], object_id)}
        return value

    def _get(self, getter, row: int, object_id: str, name: str, field: str):
        """A getter's value; any error it raises names the object and field (and is skippable)."""
        try:
            return getter(row)
        except DataError:
            raise
        except Exception as error:  # the user's getter: any failure is this object's
            dataset = type(self.datasets[name]).__name__
            raise DataError(
                f"Object {object_id}: {dataset}.get_{field}({row}) raised {type(error).__name__}: {error}. Fix "
                f'the getter or the data, or set data_set.on_bad_object = "skip" to leave such objects out.'
            ) from error

    def take_skipped(self) -> list[tuple[str, str, int]]:
        """The (object id, reason, row) of objects skipped since the last call, forgotten here."""
        skipped, self.skipped = self.skipped, []
        return skipped

    def _finite(self, value: np.ndarray | dict, object_id: str, name: str, field: str) -> np.ndarray | dict:
        """A float array checked (or mended, per nan_mode) for NaN/inf; a struct's subfields each."""
        if isinstance(value, dict):
            return {key: self._finite(v, object_id, name, f"{field}.{key}") for key, v in value.items()}
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or np.isfinite(value.sum()):
            return value
        bad = ~np.isfinite(value)
        if not bad.any():  # the sum overflowed; every value is finite
            return value
        if self.nan_mode is None:
            advice = (
                ""
                if self.skip_bad
                else ' Set data_set.nan_mode = "zero" or "quantile" to replace them, or '
                'data_set.on_bad_object = "skip" to leave such objects out.'
            )
            raise DataError(
                f"Object {object_id}: field '{name}.{field}' has {int(bad.sum())} NaN/inf value(s) of "
                f"{value.size}.{advice}"
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
                batch[name] = {}
                for field in self.fields[name]:
                    batch[name].update(_collate_field(dataset, field, items, object_ids, stack))
            if self.rows[name] is not None:
                batch[f"{name}__matched"] = np.asarray([s[f"{name}__matched"] for s in samples])
        return batch

    # -- reporting -------------------------------------------------------------------------------
    def summary(self) -> str:
        """A few readable lines: size, datasets, fields and the shape of each field."""
        lines = [f"[{self.group}] {len(self)} objects, id field '{self.primary_id_field}'"]
        try:
            first = self[0] if len(self) else None
        except DataError as error:  # the summary still shows the fields; hyrax prepare's check says more
            first = None
            lines.append(f"  (the first object cannot be read: {error})")
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


@dataclass
class Prefetched:
    """A batch's rows and what the main process read for them from tables: {dataset name: (slot of
    each batch position, {field: values})}, and the primary ids when they come from a table."""

    indices: np.ndarray
    values: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)


def _offered(dataset: HyraxDataset) -> list[str]:
    """The dataset's fields, and the columns of a catalog read in part that a request may ask for."""
    fields = dataset.fields()
    return fields + [c for c in getattr(dataset, "source_columns", ()) if c not in fields]


def _listing(dataset: HyraxDataset) -> str:
    fields = dataset.fields()
    text = f" Its fields: {', '.join(fields) or '(none)'}."
    unread = _offered(dataset)[len(fields) :]
    if unread:
        text += f" Its catalog also has {', '.join(unread)} (read when a request's fields name them)."
    return text


def _at(values, index):
    """``values[index]``, and so for each subfield of a struct's values ({subfield: values})."""
    if isinstance(values, dict):
        return {key: _at(column, index) for key, column in values.items()}
    return values[index]


def _augmented(spec: Mapping, field: str) -> bool:
    augment = spec.get("augment", False)
    return augment is True or (isinstance(augment, list) and field in augment)


def _blank(values: np.ndarray, unmatched: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "biuf":
        values = values.astype(np.float64)
        values[unmatched] = np.nan
        return values
    values = values.astype(object)
    values[unmatched] = None
    return values


def _collate_field(
    dataset: HyraxDataset, field: str, items: list[dict], object_ids: list[str], stack
) -> dict:
    """``{field: batch}``, or what the dataset's ``collate_<field>(samples)`` returns: the published
    contract, a dict that may add keys such as ``<field>_mask``."""
    custom = getattr(dataset, f"collate_{field}", None)
    if not callable(custom):
        return {field: collate_values([item[field] for item in items], field, object_ids, stack)}
    collated = custom(items)
    if not isinstance(collated, Mapping) or field not in collated:
        raise DataError(
            f"{type(dataset).__name__}.collate_{field}(samples) returned {type(collated).__name__}; it must "
            f"return a dict holding at least '{field}' (it may add keys such as '{field}_mask'). It gets "
            f"the list of samples, each a dict of fields: values = [s['{field}'] for s in samples]."
        )
    return dict(collated)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "dict {" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + "}"
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
