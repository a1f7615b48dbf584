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
from hyrax.errors import DataError
from hyrax.plugins import did_you_mean

logger = logging.getLogger(__name__)

#: Bytes of rows a per-row getter reads (and keeps) at once.
BLOCK_BYTES = 4 * 2**20


class TableDataset(HyraxDataset, register=False):
    """A Lance table as a dataset; subclasses say where the table is (see the module documentation)."""

    def _open(self, path: Path) -> None:
        import lance
        import pyarrow as pa

        self._table_path = Path(path)
        self._lance = lance.dataset(str(path))
        self._pid = os.getpid()
        self._length = self._lance.count_rows()
        self._schema = self._lance.schema
        self._columns = list(self._schema.names)
        self._shapes = _shapes(self._schema)
        self._scalars = [field.name for field in self._schema if not pa.types.is_nested(field.type)]
        row_bytes = sum(_bytes_of(self._schema.field(name).type) for name in self._columns)
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

    # -- fields ------------------------------------------------------------------------------------
    def fields(self) -> list[str]:
        return sorted(set(self.getter_fields()) | set(self._columns))

    def getter(self, field: str):
        method = getattr(type(self), f"get_{field}", None)
        if callable(method):
            return getattr(self, f"get_{field}")
        if field in self._columns:
            return lambda idx, _field=field: self._value(_field, int(idx))
        return super().getter(field)

    def __getattr__(self, name: str):
        if name.startswith("get_") and name[4:] in self.__dict__.get("_columns", ()):
            return self.getter(name[4:])
        columns = self.__dict__.get("_columns", [])
        hint = did_you_mean(name[4:], columns) if name.startswith("get_") else ""
        raise AttributeError(f"{type(self).__name__} has no attribute '{name}'.{hint}")

    # -- reading -------------------------------------------------------------------------------------
    def _value(self, field: str, idx: int) -> Any:
        if not 0 <= idx < self._length:
            raise IndexError(f"row {idx} out of range for {self._length} rows")
        block = idx // self._block_rows
        if self._block is None or self._block[0] != block:
            start = block * self._block_rows
            rows = np.arange(start, min(start + self._block_rows, self._length))
            self._block = (block, self.read_rows(rows, self._columns))
        value = self._block[1][field][idx - block * self._block_rows]
        return value.item() if isinstance(value, np.generic) and value.dtype.kind != "U" else value

    def read_rows(self, rows: Sequence[int], fields: Sequence[str]) -> dict[str, np.ndarray]:
        """Values of ``fields`` at ``rows`` (any order, repeats allowed), one read for all of them:
        numbers as numpy arrays, text as numpy str arrays, fixed-size lists as (rows, *shape) arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        unknown = [f for f in fields if f not in self._columns]
        if unknown:
            raise DataError(
                f"{type(self).__name__} has no column(s) {', '.join(unknown)}.{did_you_mean(unknown[0], self._columns)}"
            )
        if len(rows) and (rows.min() < 0 or rows.max() >= self._length):
            raise IndexError(f"rows out of range for {self._length} rows")
        unique, inverse = np.unique(rows, return_inverse=True)
        table = self._dataset().take(unique, columns=list(fields))
        return {field: _numpy(table.column(field), self._shapes.get(field))[inverse] for field in fields}

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

        for batch in self._dataset().to_batches(columns=[field], batch_size=batch_size, **SCAN):
            yield batch.column(0)

    def metadata(self, indices: Any, fields: list[str] | None = None) -> dict[str, np.ndarray]:
        """Scalar columns at ``indices`` (all scalar columns when ``fields`` is None)."""
        names = [f for f in (fields or self._columns) if f in self._columns and f in self._scalars]
        return self.read_rows(np.atleast_1d(indices), names) if names else {}


class LanceDBDataset(TableDataset):
    """A table of a LanceDB database (or a ``.lance`` table directory) as a dataset.

    ``data_location``: the LanceDB directory; ``[data_set.LanceDBDataset] table_name`` picks the table
    (not needed when there is only one).
    """

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None:
            raise DataError("LanceDBDataset needs data_location: a LanceDB directory or a .lance table.")
        location = Path(data_location).expanduser()
        name = get_setting(config, "data_set.LanceDBDataset.table_name")
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

        self._open(_lance_copy(location, cache_dir(config) / "tables"))
        super().__init__(config, location)


def _lance_table(location: Path, name: str | None) -> Path:
    if location.suffix == ".lance":
        if not location.is_dir():
            raise DataError(f"LanceDBDataset: table '{location}' does not exist.")
        return location
    if not location.is_dir():
        raise DataError(f"LanceDBDataset: '{location}' is not a LanceDB directory.")
    tables = sorted(p.stem for p in location.glob("*.lance") if p.is_dir())
    if name is None:
        if len(tables) != 1:
            raise DataError(
                f"LanceDBDataset: {location} holds {len(tables)} tables ({', '.join(tables) or 'none'}); set "
                f"data_set.LanceDBDataset.table_name to one of them."
            )
        name = tables[0]
    if name not in tables:
        raise DataError(
            f"LanceDBDataset: no table '{name}' in {location}.{did_you_mean(name, tables)} Tables: "
            f"{', '.join(tables) or '(none)'}."
        )
    return location / f"{name}.lance"


def _lance_copy(source: Path, cache: Path) -> Path:
    """A Lance copy of a Parquet file or directory, made once (streamed) and found again by the
    source's path, size and modification time.

    The copy is written by a separate process: a Lance or Arrow writer leaves thread pools
    behind that DataLoader workers forked later must not inherit, and its buffers do not count against
    this process's memory."""
    files = sorted(source.rglob("*.parquet")) if source.is_dir() else [source]
    if not files:
        raise DataError(f"ParquetDataset: no .parquet files in {source}.")
    stamp = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.blake2b(json.dumps(stamp).encode(), digest_size=12).hexdigest()
    target = cache / f"{source.stem}-{key}.lance"
    if (target / "_versions").is_dir():
        return target
    import shutil
    import subprocess
    import sys

    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{target.name}.{os.getpid()}.partial"
    failure = partial.with_name(partial.name + ".error")
    shutil.rmtree(partial, ignore_errors=True)
    logger.info("ParquetDataset: making a random-access copy of %s in %s (once)", source, target)
    arguments = json.dumps([[str(f) for f in files], str(partial), str(failure)])
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
        raise DataError(f"ParquetDataset: cannot read '{source}': {reason}.")
    try:
        os.replace(partial, target)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _write_copy(files: list[str], target: str, failure: str) -> None:
    """In the copying process: stream the Parquet files into a Lance table (an error goes to ``failure``)."""
    try:
        import lance
        import pyarrow.dataset as pads

        reader = pads.dataset(files, format="parquet").scanner(batch_size=262_144).to_reader()
        lance.write_dataset(reader, target, max_rows_per_file=4 * 2**20)
    except Exception as error:
        Path(failure).write_text(f"{type(error).__name__}: {error}")
        raise SystemExit(1) from None


def _shapes(schema) -> dict[str, tuple[int, ...]]:
    """Fixed-size-list columns -> the shape of one value (schema metadata ``shape`` when it matches)."""
    import pyarrow as pa

    shapes = {}
    declared = {}
    if schema.metadata and b"shape" in schema.metadata:
        try:
            declared = {"data": tuple(json.loads(schema.metadata[b"shape"]))}
        except ValueError:
            declared = {}
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
