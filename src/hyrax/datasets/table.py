"""Datasets over tables too large to hold in memory, read lazily: a Lance table (``LanceDBDataset``)
or a Parquet file (``ParquetDataset``).

Every column is a field: a scalar per object, or an array for a fixed-size-list column (its shape from
the schema metadata ``shape`` when present). Nothing is held per object: the data provider reads the
rows of a whole batch at once, a per-row getter reads the block of rows around it (so reading in order
touches the disk once per block), and whole columns (for joins) are streamed. A 100M-row catalog joins
to images for a few bytes per object.

Parquet is random-access only by row group, so a Parquet file is copied once, streamed, into a Lance
table under ``data_set.cache_dir`` (named by its path, size and modification time; a changed file
gets a new copy).

    [data_request.infer.catalog]
    dataset_class = "ParquetDataset"
    data_location = "./catalog.parquet"
    join_field = "object_id"

    [data_request.train.stars]
    dataset_class = "LanceDBDataset"
    data_location = "./my_lancedb"          # a LanceDB directory (or one .lance table)
    dataset_config = { table_name = "stars" }
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.ids import StringColumn
from hyrax.datasets.sky_region import region_of
from hyrax.errors import ConfigError, DataError
from hyrax.plugins import did_you_mean

logger = logging.getLogger(__name__)

#: Bytes of rows a per-row getter reads (and keeps) at once.
BLOCK_BYTES = 4 * 2**20


class TableDataset(HyraxDataset, register=False):
    """A Lance table as a dataset; subclasses say where the table is (see the module documentation)."""

    def _open(self, path: Path | Any) -> None:
        """Open a Lance table: a path, or a Lance dataset already open (LanceDB on object storage)."""
        import lance
        import pyarrow as pa

        self._lance = lance.dataset(str(path)) if isinstance(path, str | Path) else path
        self._table_path = path if isinstance(path, str | Path) else self._lance.uri
        self._pid = os.getpid()
        self._length = self._lance.count_rows()
        self._schema = self._lance.schema
        # A nested column (a light curve: a list of structs) was stored as one list column per subfield:
        # field "lc.mag" is column "lc__mag" (Lance column names cannot hold dots).
        stored = json.loads((self._schema.metadata or {}).get(b"hyrax_fields", b"{}"))
        self._column_of = {name: name for name in self._schema.names if name not in stored.values()}
        self._column_of |= stored
        self._columns = list(self._column_of)
        #: Every column of the source when only some were read (a HATS catalog read for a request).
        self.source_columns = json.loads((self._schema.metadata or {}).get(b"hyrax_source_columns", b"[]"))
        # A struct or nested column is also one field holding a dict of its subfields (``image`` ->
        # {"flux": ..., "band": ...}), as Hugging Face and the published Hyrax give it.
        self._groups: dict[str, list[str]] = {}
        for field in self._columns:
            group, _, child = field.partition(".")
            if child and group not in self._column_of:
                self._groups.setdefault(group, []).append(child)
        shapes = _shapes(self._schema)
        self._shapes = {f: shapes[c] for f, c in self._column_of.items() if c in shapes}
        self._scalars = [
            f for f, c in self._column_of.items() if not pa.types.is_nested(self._schema.field(c).type)
        ]
        self._resampling = None
        # Lists of any length (a nested subfield, a list column): batched padded, with a mask.
        self._ragged = {
            f
            for f, c in self._column_of.items()
            if pa.types.is_list(self._schema.field(c).type)
            or pa.types.is_large_list(self._schema.field(c).type)
        }
        row_bytes = sum(_bytes_of(self._schema.field(name).type) for name in self._schema.names)
        self._block_rows = int(max(64, min(16384, BLOCK_BYTES // max(1, row_bytes))))
        self._block: tuple[int, dict[str, Any]] | None = None

    def _dataset(self):
        """The Lance dataset. Lance is not fork-safe (a forked process that reads it can hang or crash),
        so a forked DataLoader worker is refused: Hyrax's loader reads tables in the main process and
        hands the values to its workers."""
        if os.getpid() != self._pid:
            raise DataError(
                f"{type(self).__name__} ({self._table_path}) was read in a forked process (a DataLoader worker), "
                f"which Lance does not allow. Read it through Hyrax's loader (it reads tables in the main process), "
                f"or set data_loader.num_workers = 0."
            )
        return self._lance

    def __len__(self) -> int:
        return self._length

    @property
    def table_fields(self) -> set[str]:
        """The fields read from the table, a batch at a time (columns, structs as dicts, resampled light
        curves): the data provider reads them in the main process and hands them to DataLoader workers."""
        return {*self._columns, *self._groups, *self._derived()}

    # -- fields ------------------------------------------------------------------------------------
    def fields(self) -> list[str]:
        return sorted(
            set(self.getter_fields()) | set(self._columns) | set(self._groups) | set(self._derived())
        )

    def default_fields(self) -> list[str]:
        """The fields a request without ``fields`` gets: every column once (a struct as its dict, not
        also as its subfields), and the resampled light curve."""
        inside = {f"{group}.{child}" for group, children in self._groups.items() for child in children}
        return [field for field in self.fields() if field not in inside]

    def getter(self, field: str):
        method = getattr(type(self), f"get_{field}", None)
        if callable(method):
            return getattr(self, f"get_{field}")
        if field in self._columns or field in self._derived():
            return lambda idx, _field=field: self._value(_field, int(idx))
        if field in self._groups:
            return lambda idx, _group=field: {
                child: self._value(f"{_group}.{child}", int(idx)) for child in self._groups[_group]
            }
        return super().getter(field)

    def __getattr__(self, name: str):
        if name.startswith("collate_") and name[8:] in self.__dict__.get("_ragged", ()):
            return lambda samples, _field=name[8:]: _padded(samples, _field)
        if name.startswith("collate_") and name[8:] in self.__dict__.get("_groups", ()):
            return lambda samples, _group=name[8:]: {_group: _padded_group(samples, _group)}
        resampling = self.__dict__.get("_resampling")
        derived = (resampling.field,) if resampling is not None else ()
        known = (*self.__dict__.get("_columns", ()), *self.__dict__.get("_groups", ()), *derived)
        if name.startswith("get_") and name[4:] in known:
            return self.getter(name[4:])
        columns = self.__dict__.get("_columns", [])
        hint = did_you_mean(name[4:], columns) if name.startswith("get_") else ""
        raise AttributeError(f"{type(self).__name__} has no attribute '{name}'.{hint}")

    # -- reading -------------------------------------------------------------------------------------
    def _value(self, field: str, idx: int) -> Any:
        if not 0 <= idx < self._length:
            raise IndexError(f"row {idx} out of range for {self._length} rows")
        if field in self._derived():
            return self.read_rows([idx], [field])[field][0]
        block = idx // self._block_rows
        if self._block is None or self._block[0] != block:
            start = block * self._block_rows
            rows = np.arange(start, min(start + self._block_rows, self._length))
            self._block = (block, self.read_rows(rows, self._stored_fields()))
        value = self._block[1][field][idx - block * self._block_rows]
        return value.item() if isinstance(value, np.generic) and value.dtype.kind != "U" else value

    def read_rows(self, rows: Sequence[int], fields: Sequence[str]) -> dict[str, np.ndarray]:
        """Values of ``fields`` at ``rows`` (any order, repeats allowed), one read for all of them:
        numbers as numpy arrays, text as numpy str arrays, fixed-size lists as (rows, *shape) arrays;
        a struct's field as {subfield: values}."""
        groups = [f for f in fields if f in self._groups]
        if groups:
            inside = [f"{g}.{c}" for g in groups for c in self._groups[g]]
            plain = [f for f in fields if f not in self._groups]
            read = self.read_rows(rows, list(dict.fromkeys(plain + inside)))
            grouped = {g: {c: read[f"{g}.{c}"] for c in self._groups[g]} for g in groups}
            return {f: grouped[f] if f in grouped else read[f] for f in fields}
        rows = np.asarray(rows, dtype=np.int64)
        unknown = [f for f in fields if f not in self._columns and f not in self._derived()]
        if unknown:
            raise DataError(
                f"{type(self).__name__} has no column(s) {', '.join(unknown)}.{did_you_mean(unknown[0], self._columns)}"
            )
        if len(rows) and (rows.min() < 0 or rows.max() >= self._length):
            raise IndexError(f"rows out of range for {self._length} rows")
        unique, inverse = np.unique(rows, return_inverse=True)
        derived = [f for f in fields if f in self._derived()]
        stored = list(dict.fromkeys([f for f in fields if f not in derived] + self._inputs_of(derived)))
        table = self._dataset().take(unique, columns=[self._column_of[f] for f in stored])
        found = {f: _numpy(table.column(self._column_of[f]), self._shapes.get(f)) for f in stored}
        for field in derived:
            found[field] = self._resampled(found, unique)
        return {field: found[field][inverse] for field in fields}

    # -- resampled light curves (hyrax.datasets.lightcurves) -------------------------------------------
    def _use_resampling(self, config: Mapping, name: str) -> None:
        """Offer ``[data_set.lightcurve]`` (when its ``column`` is set) as a field of fixed shape; the
        subfields it leaves unset are found by their common spellings (:func:`lightcurves.detect`)."""
        from hyrax.datasets.lightcurves import Resampling, detect

        settings = get_setting(config, "data_set.lightcurve") or {}
        if not isinstance(settings, Mapping) or not settings.get("column"):
            return
        where = "data_set.lightcurve"
        resampling = Resampling.from_settings(settings, where, get_setting(config, "data_set.seed"))
        nested = sorted({f.split(".", 1)[0] for f in self._columns if "." in f})
        prefix = f"{resampling.column}."
        have = [f[len(prefix) :] for f in self._columns if f.startswith(prefix)]
        if not have:
            raise DataError(
                f"{name}: {where}.column = {resampling.column!r} is not a nested column of {self.data_location}. "
                f"Nested columns: {', '.join(nested) or '(none)'}."
            )

        def band_values(band: str):  # the bands of the first objects
            return self.read_rows(np.arange(min(self._length, 1000)), [prefix + band])[prefix + band]

        resampling = detect(resampling, have, where, band_values, who=name)
        missing = [s for s in resampling.subfields if s not in have]
        if missing:
            raise DataError(
                f"{name}: {where} reads {', '.join(prefix + m for m in missing)}, which {self.data_location} does "
                f"not have. Subfields of {resampling.column!r}: {', '.join(prefix + h for h in have)}. Set {where}.time / value / "
                f"error / band to names that exist (or false, to find them by their common spellings)."
            )
        if resampling.field in self._columns:
            raise DataError(
                f"{name}: {where}.field = {resampling.field!r} is already a column; name the field another way."
            )
        self._resampling = resampling

    def _derived(self) -> tuple[str, ...]:
        return (self._resampling.field,) if self._resampling is not None else ()

    def _stored_fields(self) -> list[str]:
        return list(self._columns)

    def _inputs_of(self, derived: list[str]) -> list[str]:
        if not derived:
            return []
        return [f"{self._resampling.column}.{s}" for s in self._resampling.subfields]

    def _resampled(self, found: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        from hyrax.datasets.lightcurves import resample

        settings = self._resampling
        column = settings.column

        def values(sub):
            return found[f"{column}.{sub}"] if sub else None

        times, mags, errors, bands = (
            values(s) for s in (settings.time, settings.value, settings.error, settings.band)
        )
        out = np.empty((len(rows), *settings.shape), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i] = resample(
                times[i],
                mags[i],
                None if errors is None else errors[i],
                None if bands is None else bands[i],
                settings,
                int(row),
            )
        return out

    def column(self, field: str):
        """Every value of one column (text as a :class:`StringColumn`), read in batches."""
        if field not in self._columns:
            return super().column(field)
        import pyarrow as pa

        chunks = list(self.column_batches(field))
        if not chunks:
            return np.empty(0)
        kind = chunks[0].type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return StringColumn(pa.chunked_array(chunks, type=kind))
        return np.concatenate([_numpy(chunk, self._shapes.get(field)) for chunk in chunks])

    def column_batches(self, field: str, batch_size: int = 262_144) -> Iterator[Any]:
        """One column in row order, a batch at a time (Arrow arrays)."""
        from hyrax.results.store import SCAN

        column = self._column_of[field]
        for batch in self._dataset().to_batches(columns=[column], batch_size=batch_size, **SCAN):
            yield batch.column(0)

    def metadata(self, indices: Any, fields: list[str] | None = None) -> dict[str, np.ndarray]:
        """Scalar columns at ``indices`` (all scalar columns when ``fields`` is None)."""
        names = [f for f in (fields or self._columns) if f in self._columns and f in self._scalars]
        return self.read_rows(np.atleast_1d(indices), names) if names else {}


class LanceDBDataset(TableDataset):
    """A table of a LanceDB database (or a ``.lance`` table directory) as a dataset.

    ``data_location``: the LanceDB directory, or its URI on object storage (``s3://bucket/db``,
    ``gs://...``); ``[data_set.LanceDBDataset] table_name`` picks the table (not needed when there is
    only one). ``connect_kwargs`` go to ``lancedb.connect`` (``storage_options`` for credentials...),
    ``open_table_kwargs`` to ``open_table`` (``version`` pins a version of the table...).
    """

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None or data_location is False:
            raise DataError("LanceDBDataset needs data_location: a LanceDB directory or a .lance table.")
        settings = get_setting(config, "data_set.LanceDBDataset") or {}
        name = settings.get("table_name") or None
        connect = dict(settings.get("connect_kwargs") or {})
        open_table = dict(settings.get("open_table_kwargs") or {})
        if "://" in str(data_location) or connect or open_table:
            self._open(_lancedb_table(str(data_location), name, connect, open_table))
            super().__init__(config, str(data_location))
            return
        location = Path(data_location).expanduser()
        self._open(_lance_table(location, name))
        super().__init__(config, location)


class ParquetDataset(TableDataset):
    """A Parquet file (or a directory of them) as a dataset, every column a field."""

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None:
            raise DataError("ParquetDataset needs data_location: a Parquet file or a directory of them.")
        location = Path(data_location).expanduser()
        if not location.exists():
            raise DataError(f"ParquetDataset: '{location}' does not exist.")
        from hyrax.datasets.joins import cache_dir

        self._open(_lance_copy(location, cache_dir(config) / "tables", limit=_limit(config)))
        super().__init__(config, location)


class NestedPandasDataset(TableDataset):
    """A nested-pandas Parquet file (or a directory of them) as a dataset: every column a field, and
    every subfield of a nested column (a light curve) a field ``<column>.<subfield>`` holding that
    object's values; with ``[data_set.lightcurve]``, a light curve resampled to
    one shape (see :mod:`hyrax.datasets.lightcurves`).

    ``[data_set.NestedPandasDataset] read_kwargs`` go to ``nested_pandas.read_parquet`` (a file at a
    time). The first use makes a random-access copy under ``data_set.cache_dir``.
    """

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None:
            raise DataError("NestedPandasDataset needs data_location: a Parquet file or a directory of them.")
        location = Path(data_location).expanduser()
        if not location.exists():
            raise DataError(f"NestedPandasDataset: '{location}' does not exist.")
        from hyrax.config.manager import with_defaults
        from hyrax.datasets.joins import cache_dir

        config = with_defaults(config)  # the published class takes a partial dict: the rest at its defaults
        _require("nested_pandas", "NestedPandasDataset")
        options = dict(get_setting(config, "data_set.NestedPandasDataset.read_kwargs") or {})
        self._open(
            _lance_copy(
                location,
                cache_dir(config) / "tables",
                "nested",
                options,
                "NestedPandasDataset",
                _limit(config),
            )
        )
        super().__init__(config, location)
        self._use_resampling(config, "NestedPandasDataset")


class HyraxHATSDataset(TableDataset):
    """A HATS catalog (opened with LSDB) as a dataset: every column a field, nested columns' subfields
    as ``<column>.<subfield>`` fields, light curves resampled with
    ``[data_set.lightcurve]`` as for :class:`NestedPandasDataset`.

    ``data_location``: the catalog (or collection) directory. ``[data_set.HyraxHATSDataset]
    open_catalog_kwargs`` go to ``lsdb.open_catalog`` (``columns``, ``search_filter``, ``filters``...);
    without ``columns``, only the columns that ``[data_request]`` asks of this catalog are read (all of
    them when a request lists no fields). The catalog is read a partition at a time into a
    random-access copy under ``data_set.cache_dir``, once: a 100M-row catalog is never in memory.
    """

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None or data_location is False:
            raise DataError("HyraxHATSDataset needs data_location: the directory of a HATS catalog.")
        location = Path(data_location).expanduser()
        if not location.exists():
            raise DataError(f"HyraxHATSDataset: '{location}' does not exist.")
        if (
            location.is_dir()
            and not any(location.glob("*.properties"))
            and not any(location.glob("*/*.properties"))
        ):
            raise DataError(
                f"HyraxHATSDataset: '{location}' is not a HATS catalog (it has no hats.properties or "
                f"collection.properties). Make one with hats-import or LSDB (lsdb.from_dataframe(...)"
                f'.write_catalog(path)), or read plain Parquet files with dataset_class = "ParquetDataset".'
            )
        from hyrax.datasets.joins import cache_dir

        _require("lsdb", "HyraxHATSDataset")
        options = dict(get_setting(config, "data_set.HyraxHATSDataset.open_catalog_kwargs") or {})
        region = region_of(
            get_setting(config, "data_set.HyraxHATSDataset") or {}, "data_set.HyraxHATSDataset"
        )
        if region and "search_filter" in options:
            raise ConfigError(
                f"data_set.HyraxHATSDataset sets {next(iter(region))} and open_catalog_kwargs.search_filter: keep one."
            )
        if region:  # only the partitions (and rows) in the region are copied
            options[REGION] = region
        if "columns" not in options:
            requested = _requested_columns(config, type(self).__name__, location)
            if requested:  # those the catalog has are read (a missing field is named by the provider)
                options[REQUESTED] = requested
        self._open(
            _lance_copy(
                location, cache_dir(config) / "tables", "hats", options, "HyraxHATSDataset", _limit(config)
            )
        )
        super().__init__(config, location)
        self._use_resampling(config, "HyraxHATSDataset")


def _require(module: str, dataset: str) -> None:
    """Say which extra to install when ``module`` is missing, without importing it here: the copy is
    made in another process, and LSDB's Dask thread pools must not be inherited by forked workers."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        from hyrax.errors import PluginError

        raise PluginError(
            f"dataset_class = \"{dataset}\" needs the optional package '{module}', which is not installed: "
            f"pip install 'hyrax[catalogs]'."
        )


#: The columns [data_request] asks of a HATS catalog (an option of the copy, not of lsdb.open_catalog).
REQUESTED = "hyrax_requested_columns"
#: The sky region a HATS catalog is copied in (``{"cone": [...]}`` or ``{"box": [...]}``; see sky_region.py).
REGION = "hyrax_region"

#: The copies this process uses, each held (shared flock) so that no eviction removes it meanwhile.
_HELD: dict[Path, Any] = {}


def _limit(config: Mapping) -> int:
    from hyrax.datasets.table_cache import limit_bytes

    return limit_bytes(config)


class MultimodalUniverseDataset(TableDataset):
    """A Multimodal Universe dataset (images, spectra, time series) read with Hugging Face ``datasets``:
    every column a field, and each child of a struct column a field ``<column>.<child>`` (``image.flux``
    as a (bands, height, width) array, ``spectrum.flux``, ``lightcurve.time``...).

    ``data_location``: a local copy (a directory of the dataset's Parquet files, as on the Hub), or
    ``hf://MultimodalUniverse/<name>`` to read from the Hub. ``[data_set.MultimodalUniverseDataset]``
    ``split`` and ``max_samples`` choose the rows; they are streamed once into a random-access copy
    under ``data_set.cache_dir`` (``streaming`` is accepted for published configs: the rows are always
    streamed).
    """

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None or data_location is False:
            raise DataError(
                "MultimodalUniverseDataset needs data_location: a local copy of a Multimodal Universe dataset "
                "(a directory of its Parquet files) or hf://MultimodalUniverse/<name>."
            )
        remote = str(data_location).startswith("hf://")
        location = Path(str(data_location)).expanduser() if not remote else Path(str(data_location))
        if not remote and not location.exists():
            raise DataError(f"MultimodalUniverseDataset: '{location}' does not exist.")
        from hyrax.datasets.joins import cache_dir

        _require("datasets", "MultimodalUniverseDataset")
        settings = get_setting(config, "data_set.MultimodalUniverseDataset") or {}
        options = {"split": settings.get("split") or "train"}
        if settings.get("max_samples"):
            options["max_samples"] = int(settings["max_samples"])
        source = Path(str(data_location)) if remote else location
        self._open(
            _lance_copy(
                source,
                cache_dir(config) / "tables",
                "hf",
                options,
                "MultimodalUniverseDataset",
                _limit(config),
            )
        )
        super().__init__(config, str(data_location) if remote else location)
        self._use_resampling(config, "MultimodalUniverseDataset")
        if "image.flux" in self.fields():  # an imaging set (legacysurvey, hsc...): its flux is the image
            from hyrax.datasets.images import ImagePipeline

            self.image_pipeline = ImagePipeline.from_config(config, type(self).__name__, self.image_defaults)
            self.image_fields = {"image.flux": None, "image": "flux"}

    #: What ``"auto"`` means for an imaging set's ``image.flux`` (see :mod:`hyrax.datasets.images`): the
    #: flux as published (set ``data_set.normalize``), NaN pixels background. Taken per object by the data
    #: provider (the image field of a batch, or the ``flux`` of the ``image`` dict).
    image_defaults = {"normalize": "none", "nan_mode": "zero"}


def _requested_columns(config: Mapping, dataset_class: str, location: Path) -> list[str] | None:
    """The catalog columns that ``[data_request]`` asks of this catalog (fields, the id field, the join
    field; a nested subfield asks for its column); None when a request wants every column."""
    wanted: set[str] = set()
    for group in (config.get("data_request") or {}).values():
        for entry in group.values() if isinstance(group, Mapping) else ():
            if not isinstance(entry, Mapping) or entry.get("dataset_class") != dataset_class:
                continue
            if Path(str(entry.get("data_location", ""))).expanduser().resolve() != location.resolve():
                continue
            fields = entry.get("fields")
            if not fields:
                return None
            for key in ("primary_id_field", "join_field"):
                if entry.get(key):
                    wanted.add(str(entry[key]))
            if not entry.get("join_field"):
                wanted.add(str(entry.get("primary_id_field") or "object_id"))
            settings = get_setting(config, "data_set.lightcurve") or {}
            derived = settings.get("field", "lightcurve") if settings.get("column") else None
            for field in fields:
                if field == derived:
                    wanted.add(str(settings["column"]))
                elif field != "object_id" or "primary_id_field" not in entry:
                    wanted.add(str(field).split(".", 1)[0])
    return sorted(wanted) or None


def _padded(samples: list[dict], field: str) -> dict[str, np.ndarray]:
    """A batch of lists of any length: ``{field: (batch, longest)}`` padded with 0 (numbers) or ""
    (text), and ``{field}_mask``: True where a value is real. Lists all of one length (or missing
    values of a joined row) are batched as any field is."""
    from hyrax.datasets.collate import collate_values

    values = [np.asarray(sample[field]) for sample in samples]
    if len({v.shape for v in values}) <= 1 or any(v.ndim != 1 for v in values):
        return {field: collate_values([sample[field] for sample in samples], field, [])}
    longest = max((len(v) for v in values), default=0)
    kinds = [v.dtype for v in values if len(v)]
    dtype = np.result_type(*kinds) if kinds else np.float64
    out = (
        np.zeros((len(values), longest), dtype=dtype)
        if dtype.kind != "O"
        else np.full((len(values), longest), "")
    )
    mask = np.zeros((len(values), longest), dtype=bool)
    for i, value in enumerate(values):
        out[i, : len(value)] = value
        mask[i, : len(value)] = True
    return {field: out, f"{field}_mask": mask}


def _padded_group(samples: list[dict], group: str) -> dict[str, np.ndarray]:
    """A batch of a struct's dicts: ``{subfield: batch}``, lists of any length padded with a
    ``<subfield>_mask`` as :func:`_padded` does."""
    present = [sample[group] for sample in samples if sample[group] is not None]
    children = list(present[0]) if present else []
    out: dict[str, np.ndarray] = {}
    for child in children:
        values = [{child: None if s[group] is None else s[group][child]} for s in samples]
        out.update(_padded(values, child))
    return out


def _lance_table(location: Path, name: str | None) -> Path:
    if location.suffix == ".lance":
        if not location.is_dir():
            raise DataError(f"LanceDBDataset: table '{location}' does not exist.")
        return location
    if not location.is_dir():
        raise DataError(f"LanceDBDataset: '{location}' is not a LanceDB directory.")
    tables = sorted(p.stem for p in location.glob("*.lance") if p.is_dir())
    return location / f"{_chosen_table(tables, name, location)}.lance"


def _chosen_table(tables: list[str], name: str | None, where: Any) -> str:
    """``name`` when the database has it, else the only table; otherwise an error listing them."""
    if name is None:
        if len(tables) != 1:
            raise DataError(
                f"LanceDBDataset: {where} holds {len(tables)} tables ({', '.join(tables) or 'none'}); set "
                f"data_set.LanceDBDataset.table_name to one of them."
            )
        return tables[0]
    if name not in tables:
        raise DataError(
            f"LanceDBDataset: no table '{name}' in {where}.{did_you_mean(name, tables)} Tables: "
            f"{', '.join(tables) or '(none)'}."
        )
    return name


def _table_names(db) -> list[str]:
    """Every table of a LanceDB database (list_tables answers a page at a time)."""
    if not hasattr(db, "list_tables"):
        return sorted(db.table_names())
    names, token = [], None
    while True:
        page = db.list_tables(page_token=token)
        names += list(page.tables)
        if not isinstance(page.page_token, str) or not page.page_token or page.page_token == token:
            return sorted(names)  # the last page (a token that does not move on ends it too)
        token = page.page_token


def _lancedb_table(uri: str, name: str | None, connect: dict, open_table: dict):
    """A LanceDB table opened with lancedb (local or object storage), as a Lance dataset."""
    import lancedb

    where = "data_set.LanceDBDataset"
    try:
        db = lancedb.connect(uri, **connect)
        tables = _table_names(db)
    except (TypeError, ValueError, OSError, RuntimeError) as error:
        raise DataError(
            f"LanceDBDataset: cannot connect to '{uri}' with {where}.connect_kwargs = {connect}: {error}. "
            f"Check the URI and the keys (they go to lancedb.connect)."
        ) from None
    name = _chosen_table(tables, name, uri)
    try:
        table = db.open_table(name, **open_table)
    except (TypeError, ValueError, OSError, RuntimeError) as error:
        raise DataError(
            f"LanceDBDataset: cannot open table '{name}' of {uri} with {where}.open_table_kwargs = "
            f"{open_table}: {error}."
        ) from None
    try:
        return table.to_lance()
    except (AttributeError, NotImplementedError) as error:
        raise DataError(
            f"LanceDBDataset: table '{name}' of {uri} cannot be read as a Lance dataset ({error}); a LanceDB "
            f"Cloud table must be exported to storage Lance can read (a directory, s3://, gs://) first."
        ) from None


def _lance_copy(
    source: Path,
    cache: Path,
    kind: str = "parquet",
    options: Mapping | None = None,
    who: str = "ParquetDataset",
    limit: int | None = None,
) -> Path:
    """A Lance copy of a source table, made once (streamed) and found again by the source's files
    (path, size, modification time), its kind and the options it was read with.

    ``kind``: "parquet" (a file or a directory of them), "nested" (Parquet read with
    ``nested_pandas.read_parquet(file, **options)``, a file at a time) or "hats" (a HATS catalog opened
    with ``lsdb.open_catalog(source, **options)``, read a partition at a time).

    The copy is written by a separate process: a Lance, Arrow or Dask writer leaves thread pools
    behind that DataLoader workers forked later must not inherit, and its buffers do not count against
    this process's memory.

    ``limit``: the most bytes all copies under ``cache`` may take (``data_set.table_cache_gb``): the copy
    stops with an error naming the key when it alone would pass it (besides the copies in use), and the
    least recently used others are removed to make room once it is made."""
    from hyrax.datasets import table_cache

    remote = str(source).startswith("hf:/")
    files = [] if remote else sorted(source.rglob("*.parquet")) if source.is_dir() else [source]
    if not files and not remote:
        raise DataError(f"{who}: no .parquet files in {source}.")
    stamp = [
        kind,
        dict(options or {}),
        [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files],
    ]
    key = hashlib.blake2b(json.dumps(stamp, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()
    target = cache / f"{Path(str(source)).stem}-{key}.lance"
    if (target / "_versions").is_dir():
        _HELD.setdefault(target, table_cache.use(target))
        return target
    import shutil
    import subprocess
    import sys

    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{target.name}.{os.getpid()}.partial"
    failure = partial.with_name(partial.name + ".error")
    shutil.rmtree(partial, ignore_errors=True)
    logger.info("%s: making a random-access copy of %s in %s (once)", who, source, target)
    in_use = table_cache.in_use_bytes(cache) if limit else 0
    arguments = json.dumps(
        [
            kind,
            [str(f) for f in files],
            str(source),
            dict(options or {}),
            str(partial),
            str(failure),
            limit,
            in_use,
        ],
        default=str,
    )
    code = "import json, sys; from hyrax.datasets.table import _write_copy; _write_copy(*json.loads(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, arguments], check=False)
    if done.returncode != 0:
        reason = (
            failure.read_text()
            if failure.is_file()
            else f"the copying process ended with code {done.returncode}"
        )
        failure.unlink(missing_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"{who}: cannot read '{source}': {reason}.")
    try:
        os.replace(partial, target)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    _HELD.setdefault(target, table_cache.use(target))
    if limit:
        table_cache.evict(cache, limit, keep=target)
    return target


def _write_copy(
    kind: str,
    files: list[str],
    source: str,
    options: dict,
    target: str,
    failure: str,
    limit: int | None = None,
    in_use: int = 0,
) -> None:
    """In the copying process: stream the source into a Lance table, nested columns flattened (an
    error goes to ``failure``); stopped past ``limit`` bytes less the ``in_use`` bytes of other copies."""
    from hyrax.datasets.table_cache import size_of, too_big

    def check_size() -> None:
        if limit and size_of(Path(target)) > limit - in_use:
            raise DataError(too_big(limit, size_of(Path(target)), in_use))

    try:
        import lance
        import pyarrow as pa

        failed: list[Exception] = []  # what went wrong reading, not Lance's wrapping of it

        def guarded(batches):
            try:
                yield from batches
            except Exception as error:
                failed.append(error)
                raise

        source_info: dict[str, Any] = {}
        batches = guarded(_source_batches(kind, files, source, options, source_info))
        first = next(batches, None)
        if first is None:
            raise DataError("it holds no rows")
        first, fields = _flatten_nested(first)
        first, shapes = _fixed_shapes(first)
        metadata = {
            b"hyrax_fields": json.dumps(fields).encode(),
            b"hyrax_shapes": json.dumps(shapes).encode(),
            b"hyrax_source_columns": json.dumps(source_info.get("columns", [])).encode(),
        }
        schema = first.schema.with_metadata(metadata)

        def flattened():
            yield first.replace_schema_metadata(metadata)
            for batch in batches:
                check_size()  # what Lance has written so far
                batch = _flatten_nested(batch)[0]
                if shapes:
                    batch = _fixed_shapes(batch)[0]
                try:
                    yield batch.cast(schema).replace_schema_metadata(metadata)
                except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as error:
                    raise DataError(
                        f"its rows do not all have the columns and shapes of the first ({error}); every "
                        f"image or spectrum of one column must have one shape"
                    ) from None

        reader = pa.RecordBatchReader.from_batches(schema, flattened())
        lance.write_dataset(reader, target, max_rows_per_file=4 * 2**20)
        check_size()
    except Exception as error:
        error = failed[0] if failed else error
        Path(failure).write_text(
            str(error) if isinstance(error, DataError) else f"{type(error).__name__}: {error}"
        )
        raise SystemExit(1) from None


def _source_batches(
    kind: str, files: list[str], source: str, options: dict, info: dict | None = None
) -> Iterator[Any]:
    """Record batches of a source, in order, holding at most a file (nested) or a partition (hats).
    ``info["columns"]``: every column of a catalog read in part (hats)."""
    info = {} if info is None else info
    import pyarrow as pa

    rows = 262_144
    if kind == "parquet":
        import pyarrow.dataset as pads

        # Read ahead little: Arrow's defaults keep ~16 batches of ~4 files in flight (1.3 GB copying a
        # 10M-row table, measured), and pre-buffering holds a file's row groups (reading a 10M-row file
        # peaked at 753 MB with it, 378 MB without), for no gain when the writer is the slow side.
        parquet = pads.ParquetFileFormat(
            default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=False)
        )
        scanner = pads.dataset(files, format=parquet).scanner(
            batch_size=rows, batch_readahead=2, fragment_readahead=1
        )
        yield from scanner.to_batches()
    elif kind == "nested":
        import nested_pandas as npd

        for file in files:
            frame = npd.read_parquet(file, **options)
            yield from pa.Table.from_pandas(frame, preserve_index=False).to_batches(rows)
    elif kind == "hats":
        import dask
        import lsdb

        requested = options.pop(REQUESTED, None)
        region = options.pop(REGION, None)
        if region:
            from hyrax.datasets.sky_region import search_filter

            options["search_filter"] = search_filter(region)
        if requested:  # the catalog's columns are needed first to choose those to read
            have = set(lsdb.open_catalog(source).all_columns)
            options["columns"] = [c for c in requested if c in have] or None
        catalog = lsdb.open_catalog(source, **options)
        info["columns"] = list(catalog.all_columns)  # every column, whichever were chosen
        pixels = catalog.get_healpix_pixels()
        with dask.config.set(scheduler="synchronous"):  # one partition in memory at a time
            for pixel, partition in zip(pixels, catalog.to_delayed(), strict=True):
                try:
                    frame = partition.compute()
                except (OSError, ValueError) as error:  # FileNotFoundError, a damaged Parquet file
                    raise DataError(
                        f"its partition {pixel} cannot be read ({type(error).__name__}: {error}); the catalog "
                        f"is damaged or incomplete: write it again (hats-import or LSDB), or leave that "
                        f"region out with open_catalog_kwargs search_filter"
                    ) from None
                if len(frame):
                    yield from pa.Table.from_pandas(frame, preserve_index=False).to_batches(rows)
    elif kind == "hf":
        from datasets import load_dataset

        location = source.split(":", 1)[1].lstrip("/") if source.startswith("hf:") else source
        limit = options.get("max_samples")
        stream = load_dataset(location, split=options.get("split", "train"), streaming=True)
        images = _image_columns(stream.features)
        stream = stream.with_format("arrow")
        taken = 0
        for table in stream.iter(batch_size=1024):
            if limit:
                table = table.slice(0, limit - taken)
            taken += table.num_rows
            for name in images:
                table = table.set_column(
                    table.schema.get_field_index(name), name, _decoded_images(table.column(name), name)
                )
            yield from table.to_batches()
            if limit and taken >= limit:
                break
    else:
        raise ValueError(f"unknown source kind {kind!r}")


def _image_columns(features) -> list[str]:
    """The columns a Hugging Face dataset declares as images (PNG/JPEG bytes)."""
    from datasets import Image

    return [name for name, feature in (features or {}).items() if isinstance(feature, Image)]


def _decoded_images(column, name: str):
    """An image column (structs of encoded bytes) as nested lists of pixels (height x width [x
    channels]): read as a numpy array per object, as the published Hyrax gives them."""
    import io

    import pyarrow.compute as pc
    from PIL import Image

    arrays = []
    for row, encoded in enumerate(pc.struct_field(column.combine_chunks(), "bytes").to_pylist()):
        if encoded is None:
            raise DataError(f"image column '{name}' has no image bytes at row {row}")
        with Image.open(io.BytesIO(encoded)) as image:
            arrays.append(np.asarray(image))
    return _nested_lists(arrays)


def _nested_lists(arrays: list[np.ndarray]):
    """numpy arrays of one number of dimensions as one Arrow array of nested lists."""
    import pyarrow as pa

    values = pa.array(np.concatenate([a.ravel() for a in arrays]) if arrays else np.empty(0, np.uint8))
    for depth in reversed(range(arrays[0].ndim if arrays else 1)):
        lengths = np.concatenate(
            [np.full(int(np.prod(a.shape[:depth])), a.shape[depth], np.int64) for a in arrays]
        )
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), type=pa.int64())
        values = pa.LargeListArray.from_arrays(offsets, values)
    return values


def _flatten_nested(batch) -> tuple[Any, dict[str, str]]:
    """A batch whose nested columns became one column per subfield, named ``<column>__<subfield>``,
    and {"<column>.<subfield>": stored name}: a list of structs (nested-pandas' light curves) gives a
    list column per subfield; a struct (a Multimodal Universe image or spectrum) gives its children."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, names, fields = [], [], {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if isinstance(column.type, pa.ExtensionType):
            column = column.storage
        kind = column.type
        if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type):
            lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
            offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), type=pa.int64())
            flat = pc.list_flatten(column)
            children = [
                (child.name, pa.LargeListArray.from_arrays(offsets, pc.struct_field(flat, child.name)))
                for child in kind.value_type
            ]
        elif pa.types.is_struct(kind):
            children = [(child.name, _storage(pc.struct_field(column, child.name))) for child in kind]
        else:
            arrays.append(column)
            names.append(name)
            continue
        for child, values in children:
            stored = f"{name}__{child}"
            arrays.append(values)
            names.append(stored)
            fields[f"{name}.{child}"] = stored
    if not fields:
        return pa.RecordBatch.from_arrays(arrays, names=names), {}
    return pa.RecordBatch.from_arrays(arrays, names=names), fields


def _storage(array):
    import pyarrow as pa

    return array.storage if isinstance(array.type, pa.ExtensionType) else array


def _fixed_shapes(batch) -> tuple[Any, dict[str, list[int]]]:
    """Lists of lists whose every row has one shape (an image, bands x height x width) become
    fixed-size lists of the flattened values, with {column: shape}: they are then read as (rows,
    *shape) arrays. Rows of different shapes are left as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, shapes = [], {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        shape, values = [], column
        while (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)) and len(values):
            lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            if values.null_count or len(set(lengths.tolist())) != 1:
                break
            shape.append(int(lengths[0]))
            values = pc.list_flatten(values)
        nested_lists = len(shape) >= 2 and not pa.types.is_nested(values.type)
        if nested_lists and len(values) == len(column) * int(np.prod(shape)):
            arrays.append(pa.FixedSizeListArray.from_arrays(values, int(np.prod(shape))))
            shapes[name] = shape
        else:
            arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names), shapes


def _shapes(schema) -> dict[str, tuple[int, ...]]:
    """Fixed-size-list columns -> the shape of one value (schema metadata ``shape``, ``hyrax_shapes`` or a
    results table's per-column ``tensor_shape``, when it matches)."""
    import pyarrow as pa

    shapes = {}
    declared = {}
    if schema.metadata and b"shape" in schema.metadata:
        try:
            declared = {"data": tuple(json.loads(schema.metadata[b"shape"]))}
        except ValueError:
            declared = {}
    if schema.metadata and b"hyrax_shapes" in schema.metadata:
        declared |= {k: tuple(v) for k, v in json.loads(schema.metadata[b"hyrax_shapes"]).items()}
    for field in schema:  # a results table's columns (Hyrax 0.13's layout): <name> -> {"tensor_shape": ...}
        described = (schema.metadata or {}).get(field.name.encode(), b"")
        described = json.loads(described) if described.startswith(b"{") else {}
        if isinstance(described.get("tensor_shape"), list):
            declared.setdefault(field.name, tuple(described["tensor_shape"]))
    for field in schema:
        if pa.types.is_fixed_size_list(field.type):
            width = field.type.list_size
            shape = declared.get(field.name)
            shapes[field.name] = shape if shape and int(np.prod(shape)) == width else (width,)
    return shapes


def _bytes_of(kind) -> int:
    import pyarrow as pa

    if pa.types.is_fixed_size_list(kind):
        return kind.list_size * _bytes_of(kind.value_type)
    try:
        return max(1, kind.bit_width // 8)
    except ValueError:
        return 32  # strings and other variable-width values: a guess


def _numpy(array, shape: tuple[int, ...] | None) -> np.ndarray:
    """An Arrow column as numpy: text as str, fixed-size lists as (rows, *shape)."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if shape is not None:
        values = array.values.to_numpy(zero_copy_only=False)
        return values.reshape(len(array), *shape)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        values = array.to_numpy(zero_copy_only=False)
        return values if array.null_count else values.astype(str)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):  # arrays of any length
        values = array.to_numpy(zero_copy_only=False)
        lengths = {len(v) for v in values if v is not None}
        if len(lengths) == 1 and not array.null_count:  # one length: a (rows, length) array
            return np.stack(list(values))
        return values
    return array.to_numpy(zero_copy_only=False)
