"""The results table: one row per object, ``object_id`` and a fixed-size ``data`` vector, in Lance.

Each value column's shape and dtype are in the schema metadata as Hyrax 0.13 writes them (``<key>`` ->
``{"tensor_shape", "tensor_dtype"}``; a table of one ``data`` column also has them at the top, as the
published writer did before 0.13 and its readers still take), so that any published Hyrax reads the table;
tables written before with ``shape``/``dtype`` are read too.
A model whose ``infer_batch`` returns a dict (``{"data": z, "logits": y}``) gets one fixed-size column
per key. ``results[i]`` is then a dict of the row's columns and ``results.get_<key>(i)`` one of them, as
published; the verbs that read vectors (reduce_dimensions, indexes, outliers) read the ``data`` column.

``<run>/lance_db/results.lance`` opens with plain LanceDB (``lancedb.connect(run / "lance_db")
.open_table("results")``) or pylance (``lance.dataset(...)``); the tensor shape and dtype are in the
schema metadata. Rows are streamed in chunks: memory stays flat whatever the number of objects. Each
chunk is one atomic Lance commit, so a run killed at any moment leaves a readable table of whole
chunks, and :class:`ResultWriter` continues it (``resume=True``).

>>> import tempfile, numpy as np
>>> run = Path(tempfile.mkdtemp())
>>> with ResultWriter(run, shape=(2,), dtype="float32") as writer:
...     writer.write(np.array(["a", "b"]), np.array([[1, 2], [3, 4]], dtype=np.float32))
>>> results = ResultDataset(data_location=run)
>>> len(results), results.lookup("b").tolist()
(2, [3.0, 4.0])
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.datasets.dataset import HyraxDataset
from hyrax.errors import DataError, ResultsError, ResultsWriteError
from hyrax.faults import fault_point

logger = logging.getLogger(__name__)

TABLE_DIRECTORY = "lance_db"
TABLE_NAME = "results"
#: Rows are committed in chunks of at most this many bytes of vectors (and at most CHUNK_ROWS rows).
CHUNK_BYTES = 8 * 2**20
CHUNK_ROWS = 32_768
#: When a table is closed its chunks are compacted into fragments of this many bytes to twice that (at
#: most COMPACT_ROWS rows to twice that): ~200 fragments at 100M 64-d objects instead of ~3,000 chunks.
COMPACT_BYTES = 128 * 2**20
COMPACT_ROWS = 2**19
_CACHE_BLOCK = 4096
#: Options of every whole-table scan: Lance reads ahead up to 2 GB by default; 32 MB keeps a scan's
#: memory ~0.2 GB at 10M rows (measured), with the same speed.
SCAN = {"io_buffer_size": 32 * 2**20, "batch_readahead": 4}


def table_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / TABLE_DIRECTORY / f"{TABLE_NAME}.lance"


def _schema(shape: tuple[int, ...], dtype: str):
    """The schema of a table of one vector per object: ``object_id`` and ``data``."""
    return columns_schema({"data": (tuple(shape), np.dtype(dtype))})


#: Per column of a results table: (shape of one object's value, dtype).
Columns = dict[str, tuple[tuple[int, ...], np.dtype]]


def columns_schema(columns: Columns):
    """The schema of a results table: ``object_id`` and one fixed-size list per value column (``data``,
    or each key of a dict ``infer_batch`` returns), each column's shape and dtype in the metadata as
    Hyrax 0.13 writes them: ``<key>`` -> ``{"tensor_shape": [...], "tensor_dtype": "float32"}``. A
    table of ``data`` alone also has ``tensor_shape`` and ``tensor_dtype`` at the top: the published
    readers before 0.13 read only those, and 0.13's takes them for ``data``. Nothing else is written
    there (0.13's reader takes every other key as a column's): the Hyrax version is in the run's
    ``hyrax_run.toml``."""
    import pyarrow as pa

    fields, metadata = [("object_id", pa.string())], {}
    for key, (shape, dtype) in columns.items():
        width = int(np.prod(shape)) if shape else 1
        fields.append((key, pa.list_(pa.from_numpy_dtype(np.dtype(dtype)), width)))
        metadata[key] = json.dumps({"tensor_shape": list(shape), "tensor_dtype": str(np.dtype(dtype))})
    if list(columns) == ["data"]:
        shape, dtype = columns["data"]
        metadata |= {"tensor_shape": json.dumps(list(shape)), "tensor_dtype": str(np.dtype(dtype))}
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in metadata.items()})


def _fixed_size(values: np.ndarray):
    import pyarrow as pa

    flat = np.ascontiguousarray(values).reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def arrow_table(object_ids: np.ndarray, data: np.ndarray | Mapping[str, np.ndarray], schema):
    """object ids and (rows, *shape) data (or a dict of such arrays, one per column of ``schema``) -> an
    Arrow table of the results schema."""
    import pyarrow as pa

    from hyrax.datasets.ids import arrow_strings

    named = data if isinstance(data, Mapping) else {"data": data}
    columns = [_fixed_size(named[name]) for name in schema.names[1:]]
    return pa.Table.from_arrays([arrow_strings(object_ids), *columns], schema=schema)


def compact_table(path: Path, row_bytes: int) -> None:
    """Rewrite a table's many small commits as a few fragments of COMPACT_BYTES to twice that (pages
    copied, not re-encoded; rows keep their order), and delete the files only older versions used.
    Bounded fragments keep bounded what reads a fragment at a time (the vector index build)."""
    import datetime

    import lance

    target = int(min(COMPACT_ROWS, max(CHUNK_ROWS, COMPACT_BYTES // max(1, row_bytes))))
    dataset = lance.dataset(str(path))
    if len(dataset.get_fragments()) <= max(1, dataset.count_rows() // target) + 1:
        return
    # One call over every fragment: compacting a part at a time would move the new fragment to the end.
    dataset.optimize.compact_files(target_rows_per_fragment=target, compaction_mode="try_binary_copy")
    lance.dataset(str(path)).cleanup_old_versions(older_than=datetime.timedelta(0))


def id_index_path(path: Path) -> Path:
    """The id index beside a table: ``results.lance`` -> ``results.ids.npy``."""
    return path.with_name(f"{path.stem}.ids.npy")


def index_ids(path: Path) -> None:
    """Write the id index of the table at ``path`` (:func:`hyrax.datasets.ids.write_id_index`: 8 bytes
    an object on disk, built in memory bounded by a batch; Lance's BTREE held ~28 bytes an object while
    building). Rows appended later are found by reading them (see :meth:`ResultDataset.rows_of`)."""
    from hyrax.datasets.ids import write_id_index

    results = ResultDataset(data_location=path)
    write_id_index(results.column_batches("object_id"), id_index_path(path), len(results))


def _layout(schema, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one object's result in a table without per-column metadata: from the metadata
    this Hyrax wrote before (``shape``, ``dtype``), or the older published Hyrax's (``tensor_shape``,
    ``tensor_dtype`` at the top), or else from the ``data`` column's type (a fixed-size list of N
    values: shape (N,)). Never a shape that would read the values of several rows as one."""
    import pyarrow as pa

    metadata = schema.metadata or {}
    field = schema.field("data") if "data" in schema.names else None
    kind = field.type if field is not None else None
    size = kind.list_size if kind is not None and pa.types.is_fixed_size_list(kind) else None
    text = metadata.get(b"shape", metadata.get(b"tensor_shape"))
    shape = tuple(json.loads(text.decode())) if text is not None else ((size,) if size is not None else ())
    dtype_text = metadata.get(b"dtype", metadata.get(b"tensor_dtype"))
    if dtype_text is not None:
        dtype = np.dtype(dtype_text.decode())
    elif size is not None:
        dtype = np.dtype(kind.value_type.to_pandas_dtype())
    else:
        dtype = np.dtype("float32")
    count = int(np.prod(shape)) if shape else 1
    if size is not None and count != size:
        raise ResultsError(
            f"Results table {path}: its metadata says each result has shape {list(shape)} ({count} values), "
            f"but its data column holds {size} values per row. The table was changed by hand or written by "
            f"another tool; write it again with Hyrax."
        )
    return shape, dtype


def column_layouts(schema, path: Path) -> Columns:
    """(shape, dtype) of each value column of a results table: ``data`` through :func:`_layout`; other
    columns (an ``infer_batch`` dict's keys) from their published-style metadata, else from the column's
    fixed-size list type."""
    import pyarrow as pa

    metadata = schema.metadata or {}
    layouts: Columns = {}
    for field in schema:
        if field.name == "object_id" or not pa.types.is_fixed_size_list(field.type):
            continue
        described = metadata.get(field.name.encode())
        if described is not None:
            text = json.loads(described.decode())
            layouts[field.name] = (tuple(text["tensor_shape"]), np.dtype(text["tensor_dtype"]))
        elif field.name == "data":
            layouts["data"] = _layout(schema, path)
        else:
            layouts[field.name] = ((field.type.list_size,), np.dtype(field.type.value_type.to_pandas_dtype()))
        shape = layouts[field.name][0]
        if (int(np.prod(shape)) if shape else 1) != field.type.list_size:
            raise ResultsError(
                f"Results table {path}: its metadata gives column {field.name} the shape {list(shape)}, but "
                f"the column holds {field.type.list_size} values per row. Write the table again with Hyrax."
            )
    return layouts


def output_columns(outputs: np.ndarray | Mapping[str, np.ndarray]) -> Columns:
    """The columns a batch of model outputs makes: ``data`` for an array, one per key for a dict."""
    named = outputs if isinstance(outputs, Mapping) else {"data": outputs}
    if "object_id" in named:
        raise ResultsError(
            "infer_batch returned a dict with the key 'object_id', which the results table keeps for the ids: "
            "name that output otherwise."
        )
    return {str(k): (tuple(np.shape(v)[1:]), np.asarray(v).dtype) for k, v in named.items()}


def _has_versions(path: Path) -> bool:
    versions = path / "_versions"
    return versions.is_dir() and any(versions.iterdir())


def replace_table(path: Path, schema, batches, what: str) -> None:
    """Write a table derived from a run's results (outlier scores, a ranking) from a stream of record
    batches as one Lance commit: until it lands, readers (and a writer killed half-way) see the previous
    table whole. Then the older versions' files go (and those of writes killed before their commit): the
    caller holds the table's lock, so no other writer can own them."""
    import datetime
    import shutil

    import lance
    import pyarrow as pa

    if path.exists() and not _has_versions(path):
        shutil.rmtree(path)  # files of a first write that never committed
    try:
        # Written, then committed (what lance.write_dataset does in one call), so that the fault point
        # between them is where a kill lands.
        written = lance.fragment.write_fragments(
            pa.RecordBatchReader.from_batches(schema, batches),
            str(path),
            schema=schema,
            mode="overwrite" if path.exists() else "create",
            return_transaction=True,
        )
        fault_point("derived_table.written")
        lance.LanceDataset.commit(str(path), written)
        fault_point("derived_table.committed")
        lance.dataset(str(path)).cleanup_old_versions(
            older_than=datetime.timedelta(0), delete_unverified=True
        )
    except OSError as error:
        raise ResultsWriteError(f"Writing {what} to {path} failed: {error}.") from error


def checked_batch(
    columns: Mapping[str, tuple[tuple, Any]], named: bool, object_ids, data
) -> dict[str, np.ndarray]:
    """A batch of results (an array, or a dict of arrays with the table's keys) as {column: array} in the
    table's dtypes, after checking that its kind, keys, shapes and length are the table's
    (``columns``: {key: (shape, dtype)}; ``named``: the table holds a dict's keys)."""
    if named != isinstance(data, Mapping):
        raise ResultsError(
            f"A batch of results is {'a dict' if isinstance(data, Mapping) else 'an array'}; this table holds "
            f"{'the columns ' + ', '.join(columns) if named else 'one array per object'}."
        )
    batch = {key: np.asarray(value) for key, value in (data if named else {"data": data}).items()}
    if set(batch) != set(columns):
        raise ResultsError(
            f"A batch of results has the keys {', '.join(batch)}; this table holds {', '.join(columns)}."
        )
    for key, (shape, dtype) in columns.items():
        if batch[key].shape[1:] != shape:
            where = f" ({key})" if named else ""
            raise ResultsError(
                f"A batch of results{where} has shape {batch[key].shape[1:]}; this table holds {shape}."
            )
        if len(batch[key]) != len(object_ids):
            raise ResultsError(f"{len(object_ids)} object ids for {len(batch[key])} results.")
        batch[key] = batch[key].astype(dtype, copy=False)
    return batch


class ResultWriter:
    """Streams (object_id, vector) rows into ``<run>/lance_db/results.lance``.

    Args:
        run_dir: the run directory.
        shape, dtype: of one object's result (the table's vectors); or a dict of shapes (and of dtypes,
            or one dtype) for named columns: an ``infer_batch`` that returns a dict.
        resume: continue an existing table instead of refusing to touch it.
        commit_seconds: commit at least this often (a kill loses at most this much work).
    """

    def __init__(
        self,
        run_dir: str | Path,
        shape: Sequence[int],
        dtype: Any = "float32",
        resume: bool = False,
        commit_seconds: float = 60.0,
    ):
        self.path = table_path(run_dir)
        self.commit_seconds = float(commit_seconds)
        self._last_flush = time.monotonic()
        self.named = isinstance(shape, Mapping)
        shapes = shape if isinstance(shape, Mapping) else {"data": shape}
        self.columns: Columns = {
            str(key): (
                tuple(int(s) for s in value),
                np.dtype(dtype[key] if isinstance(dtype, Mapping) else dtype),
            )
            for key, value in shapes.items()
        }
        self.shape, self.dtype = self.columns.get("data", ((), np.dtype("float32")))
        self.schema = columns_schema(self.columns)
        self.row_bytes = max(
            1, sum(int(np.prod(shape or (1,))) * dtype.itemsize for shape, dtype in self.columns.values())
        )
        self.chunk_rows = max(1024, min(CHUNK_ROWS, CHUNK_BYTES // self.row_bytes))
        self._ids: list[np.ndarray] = []
        self._data: list[Any] = []
        self._buffered = 0
        self.committed = 0
        if self.path.exists() and not _has_versions(self.path):
            # Data files of a first chunk that was never committed (killed, disk full): no reader can see
            # them, so they are removed and the table starts afresh.
            import shutil

            shutil.rmtree(self.path)
        if not self.path.exists():
            id_index_path(self.path).unlink(missing_ok=True)  # left by a table removed by hand
        if self.path.exists():
            if not resume:
                raise ResultsError(
                    f"Results table {self.path} exists already; resume the run or use a new run directory."
                )
            existing = self._dataset()
            held = column_layouts(existing.schema, self.path)
            if held != self.columns:
                show = lambda c: ", ".join(f"{k} {list(s)} {d}" for k, (s, d) in c.items())  # noqa: E731
                raise ResultsError(
                    f"Results table {self.path} holds {show(held)}, but the model now gives {show(self.columns)}: "
                    f"resume with the same model and weights."
                )
            self.committed = existing.count_rows()
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ResultsError(f"Cannot create {self.path.parent}: {error.strerror}.") from None

    @classmethod
    def layout_of(cls, outputs: np.ndarray | Mapping[str, np.ndarray]) -> tuple[Any, Any]:
        """(shape, dtype) arguments for a table of these model outputs (dicts of them for a dict)."""
        columns = output_columns(outputs)
        if isinstance(outputs, Mapping):
            return {k: c[0] for k, c in columns.items()}, {k: c[1] for k, c in columns.items()}
        return columns["data"]

    def _dataset(self):
        import lance

        return lance.dataset(str(self.path))

    def last_object_id(self) -> str | None:
        """The id of the last committed row (None for an empty table)."""
        if not self.committed:
            return None
        table = self._dataset().take([self.committed - 1], columns=["object_id"])
        return table.column("object_id")[0].as_py()

    def write(self, object_ids: np.ndarray, data: np.ndarray | Mapping[str, np.ndarray]) -> None:
        """Buffer rows (``data``: an array, or a dict of arrays with this table's keys); commit when a
        chunk is full or ``commit_seconds`` have passed."""
        named = checked_batch(self.columns, self.named, object_ids, data)
        self._ids.append(np.asarray(object_ids))
        self._data.append(named if self.named else named["data"])
        self._buffered += len(object_ids)
        if self._buffered >= self.chunk_rows or time.monotonic() - self._last_flush >= self.commit_seconds:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered rows as one Lance version (atomic: all of them or none)."""
        if not self._buffered:
            return
        import lance

        if self.named:
            data: Any = {key: np.concatenate([part[key] for part in self._data]) for key in self.columns}
        else:
            data = np.concatenate(self._data)
        table = arrow_table(np.concatenate(self._ids), data, self.schema)
        mode = "append" if _has_versions(self.path) else "create"
        try:
            # Written, then committed: what lance.write_dataset does, in two steps so that the fault
            # point between them is where a kill lands (data files no version lists, which readers
            # never see and a resume ignores).
            written = lance.fragment.write_fragments(
                table, str(self.path), schema=self.schema, mode=mode, return_transaction=True
            )
            fault_point("results.fragment_written")
            lance.LanceDataset.commit(str(self.path), written)
        except OSError as error:
            raise ResultsWriteError(
                f"Writing results to {self.path} failed ({error}). The table still holds the {self.committed} rows "
                f"committed before; free disk space and resume the run."
            ) from error
        fault_point("results.committed")
        self._last_flush = time.monotonic()
        self.committed += self._buffered
        self._ids, self._data, self._buffered = [], [], 0

    def close(self, index: bool = True) -> None:
        """Flush, compact the table's chunks into a bounded number of fragments, and index ``object_id``
        so that look-ups by id do not scan the table."""
        self.flush()
        if index and self.path.exists():
            compact_table(self.path, self.row_bytes)
            index_ids(self.path)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()


class ResultDataset(HyraxDataset):
    """The results of an inference run, as a dataset: ``len``, ``r[i]``, ``r[indices]``, iteration,
    ``ids()``, ``lookup(object_id)``, and the fields ``object_id`` and ``data`` for ``[data_request]``.

    A table of named columns (an ``infer_batch`` that returned a dict) reads as published: ``keys()``
    lists them, ``r[i]`` is ``{key: array}``, ``r[indices]`` a list of those, ``r.get_<key>(i)`` one
    value; every key is a field for ``[data_request]``.

    Args:
        config: a Hyrax config (optional).
        data_location: the run directory (or the ``results.lance`` path itself).
    """

    def __init__(self, config=None, data_location: str | Path | None = None):
        import lance

        if data_location is None:
            raise ResultsError("ResultDataset needs data_location: an inference run directory.")
        location = Path(data_location).expanduser()
        if location.suffix != ".lance":  # a run directory: only a finished one, unless asked
            _check_finished(location, config)
        path = location if location.suffix == ".lance" else table_path(location)
        if not path.exists() or not _has_versions(path):
            raise ResultsError(
                f"No results table at {path} (or none with committed rows): run `hyrax infer` first, or give an "
                f"inference run directory."
            )
        self.table_path = path
        self._lance = lance.dataset(str(path))
        self.columns = column_layouts(self._lance.schema, path)
        self.named = list(self.columns) != ["data"]
        self.shape, self.dtype = self.columns.get("data", (None, None))
        self._length = self._lance.count_rows()
        self._columns = ("object_id", *self.columns)
        self.table_fields = frozenset(self._columns)
        for key in self.columns:  # get_<key>, as the published ResultDataset gives them
            if not hasattr(self, f"get_{key}"):
                setattr(self, f"get_{key}", functools.partial(self._value, key))
        self._block: tuple[int, np.ndarray, np.ndarray] | None = None
        self._index: Any = False  # the id index, opened on first use (None: there is none)
        self._pid = os.getpid()
        super().__init__(config or {}, location)

    @property
    def version(self) -> int:
        """The results table's version (Lance): derived results (outlier scores, indexes) record it, and
        are stale when it has moved on."""
        return int(self._lance.version)

    #: Its fields as table columns (set per table: ``object_id`` and the value columns).
    _columns = ("object_id", "data")
    #: Fields the data provider reads a batch at a time, in the main process (Lance is not fork-safe).
    table_fields = frozenset(_columns)
    _reads_own_getters = True

    def keys(self) -> list[str]:
        """The value columns, as published: ``["data"]``, or the keys ``infer_batch`` returned."""
        return list(self.columns)

    def fields(self) -> list[str]:
        return sorted(self.table_fields)

    def getter(self, field: str):
        if field in self.columns:
            return functools.partial(self._value, field)
        return super().getter(field)

    def _value(self, key: str, idx: int) -> np.ndarray:
        return self._cached(int(idx))[1][key]

    def read_rows(self, rows, fields) -> dict[str, np.ndarray]:
        """Values of ``fields`` ("object_id" and value columns) at ``rows``, in one read."""
        self._check_process()
        for field in fields:
            if field != "object_id" and field not in self.columns:
                self._column(None, field)  # says which columns there are
        rows = np.asarray(rows, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        table = self._lance.take(unique, columns=list(fields))
        found = {}
        for field in fields:
            values = (
                table.column(field).to_numpy(zero_copy_only=False).astype(str)
                if field == "object_id"
                else self._column(table, field)
            )
            found[field] = values[inverse]
        return found

    def column_batches(self, field: str, batch_size: int = 262_144):
        """One column in row order, a batch at a time (Arrow arrays)."""
        for batch in self._lance.to_batches(columns=[field], batch_size=batch_size, **SCAN):
            yield batch.column(0)

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise ResultsError(
                f"The results table {self.table_path} was read in a forked process (a DataLoader worker), which "
                f"Lance does not allow. Read it through Hyrax's loader, or set data_loader.num_workers = 0."
            )

    def __len__(self) -> int:
        return self._length

    def _column(self, table, key: str) -> np.ndarray:
        if key not in self.columns:
            raise ResultsError(
                f"The results {self.table_path} have no column '{key}'; their columns: {', '.join(self.columns)}."
            )
        shape, dtype = self.columns[key]
        flat = table.column(key).combine_chunks().values.to_numpy(zero_copy_only=False)
        return flat.reshape(len(table), *shape).astype(dtype, copy=False) if shape else flat

    def _vectors(self, table) -> np.ndarray:
        if "data" not in self.columns:
            raise ResultsError(
                f"The results {self.table_path} have the columns {', '.join(self.columns)} and no 'data' "
                "column, which the verbs that read vectors use: return a 'data' key from infer_batch, or read "
                "a column with results.get_<key>(i) or as a [data_request] field."
            )
        return self._column(table, "data")

    def _named_rows(self, table) -> list[dict[str, np.ndarray]]:
        values = {key: self._column(table, key) for key in self.columns}
        return [{key: array[i] for key, array in values.items()} for i in range(len(table))]

    def _rows(self, indices: np.ndarray):
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < -self._length or indices.max() >= self._length):
            raise IndexError(f"row index out of range for {self._length} results")
        return self._lance.take(np.where(indices < 0, indices + self._length, indices))

    def _cached(self, index: int) -> tuple[str, dict[str, np.ndarray]]:
        """(id, {column: value}) of row ``index``, through a cache of blocks of rows (sequential readers
        touch storage rarely)."""
        self._check_process()
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"row {index} out of range for {self._length} results")
        start = index - index % _CACHE_BLOCK
        if self._block is None or self._block[0] != start:
            table = self._lance.take(np.arange(start, min(start + _CACHE_BLOCK, self._length)))
            self._block = (
                start,
                table.column("object_id").to_numpy(zero_copy_only=False),
                {key: self._column(table, key) for key in self.columns},
            )
        offset = index - start
        return self._block[1][offset], {key: values[offset] for key, values in self._block[2].items()}

    def __getitem__(self, index):
        """The vector of row ``index``, or the vectors of an array or slice of rows. A table of named
        columns: ``{key: value}`` of the row, or a list of those (as published)."""
        if isinstance(index, int | np.integer):
            row = self._cached(int(index))[1]
            return row if self.named else row["data"]
        if isinstance(index, slice):
            index = np.arange(*index.indices(self._length))
        table = self._rows(np.asarray(index))
        return self._named_rows(table) if self.named else self._vectors(table)

    def ids_at(self, rows) -> np.ndarray:
        """The object ids of these rows (str), in the order given, in one read."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.empty(0, dtype=str)
        if rows.min() < 0 or rows.max() >= self._length:
            raise IndexError(f"row index out of range for {self._length} results")
        order = np.argsort(rows, kind="stable")
        ids = np.empty(len(rows), dtype=object)
        table = self._lance.take(rows[order], columns=["object_id"])
        ids[order] = table.column("object_id").to_numpy(zero_copy_only=False)
        return ids.astype(str)

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(object ids, vectors) of these rows, in one read."""
        table = self._rows(np.asarray(rows))
        return table.column("object_id").to_numpy(zero_copy_only=False).astype(str), self._vectors(table)

    def get_data(self, idx: int) -> np.ndarray:
        if "data" not in self.columns:
            self._vectors(None)  # says which columns there are
        return self._cached(int(idx))[1]["data"]

    def get_object_id(self, idx: int) -> str:
        return str(self._cached(int(idx))[0])

    def ids(self) -> np.ndarray:
        """Every object id, in row order, as a numpy array of str (see :meth:`id_column` for a compact
        one)."""
        return np.asarray(self.id_column())

    def id_column(self):
        """Every object id, in row order, as a :class:`~hyrax.datasets.ids.StringColumn` (one Arrow
        buffer: the ids' bytes plus 4 bytes each)."""
        from hyrax.datasets.ids import StringColumn

        return StringColumn(self._lance.to_table(columns=["object_id"], **SCAN).column("object_id"))

    def column(self, field: str) -> np.ndarray:
        if field == "object_id":
            return self.id_column()
        return super().column(field)

    def iter_batches(
        self, batch_size: int = 65536, vectors: bool = True, rows: tuple[int, int] | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(object ids, vectors) in row order, a batch at a time (``vectors=False``: ids only, and
        None); ``rows=(start, stop)``: those rows only."""
        import pyarrow as pa

        columns = ["object_id", "data"] if vectors else ["object_id"]
        window = (
            {} if rows is None else {"offset": int(rows[0]), "limit": max(0, int(rows[1]) - int(rows[0]))}
        )
        for batch in self._lance.to_batches(batch_size=batch_size, columns=columns, **window, **SCAN):
            table = pa.Table.from_batches([batch])
            ids = table.column("object_id").to_numpy(zero_copy_only=False).astype(str)
            yield ids, self._vectors(table) if vectors else None

    def rows_of(self, object_ids: Sequence[str]) -> np.ndarray:
        """The row of each id (-1 where it is not there), through the id index written with the table
        (O(log N) pages read, nothing held per object); rows appended after it was written (a resumed
        run not yet finished) are read to find the rest. A table without one (written elsewhere) is
        asked through Lance's filter (its BTREE where it has one)."""
        from hyrax.datasets.ids import arrow_strings

        wanted = arrow_strings(object_ids)
        rows = np.full(len(wanted), -1, dtype=np.int64)
        if not len(wanted):
            return rows
        index = self._id_index()
        if index is not None:
            rows = index.rows_of(wanted)
            missing = np.flatnonzero(rows < 0)
            if len(missing) and len(index) < self._length:
                rows[missing] = self._rows_in_tail(wanted.take(missing).to_pylist(), len(index))
            return rows
        unique = wanted.unique()
        table = self._lance.to_table(
            columns=["object_id"], filter=_in_filter(unique.to_pylist()), with_row_address=True
        )
        found = dict(
            zip(table.column("object_id").to_pylist(), self._positions(table.column("_rowaddr")), strict=True)
        )
        for position, object_id in enumerate(wanted.to_pylist()):
            rows[position] = found.get(object_id, -1)
        return rows

    def _id_index(self):
        """The id index written with the table (None when there is none, or it is not this table's)."""
        if self._index is False:
            from hyrax.datasets.ids import open_id_index

            path = id_index_path(self.table_path)
            self._index = None
            if path.is_file():
                index = open_id_index(path, self.ids_at)
                self._index = index if len(index) <= self._length else None
        return self._index

    def _rows_in_tail(self, object_ids: list[str], start: int) -> np.ndarray:
        """Rows of ``object_ids`` among the rows from ``start`` on (-1: not there), read in batches."""
        wanted = {object_id: position for position, object_id in enumerate(object_ids)}
        rows = np.full(len(object_ids), -1, dtype=np.int64)
        for first in range(start, self._length, 262_144):
            last = min(first + 262_144, self._length)
            ids = self._lance.take(np.arange(first, last), columns=["object_id"]).column("object_id")
            for offset, object_id in enumerate(ids.to_pylist()):
                position = wanted.get(object_id)
                if position is not None and rows[position] < 0:
                    rows[position] = first + offset
        return rows

    def _positions(self, addresses) -> np.ndarray:
        """Row addresses (fragment id << 32 | offset) -> row positions in the table."""
        if getattr(self, "_fragment_starts", None) is None:
            starts, total = {}, 0
            for fragment in self._lance.get_fragments():
                if fragment.metadata.deletion_file is not None:
                    raise ResultsError(
                        f"Results table {self.table_path} has deleted rows; it cannot be read by position."
                    )
                starts[fragment.fragment_id] = total
                total += fragment.count_rows()
            self._fragment_starts = starts
        addresses = np.asarray(addresses.to_numpy(zero_copy_only=False), dtype=np.uint64)
        fragments = (addresses >> np.uint64(32)).astype(np.int64)
        offsets = (addresses & np.uint64(0xFFFFFFFF)).astype(np.int64)
        return np.asarray([self._fragment_starts[f] for f in fragments], dtype=np.int64) + offsets

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, vectors in self.iter_batches():
            yield from vectors

    def lookup(self, object_id: str) -> np.ndarray:
        """The vector of ``object_id`` (through the id index, not a scan)."""
        found = self.lookup_many([object_id])
        return found[0]

    def lookup_many(self, object_ids: Sequence[str]) -> np.ndarray:
        """Vectors of several ids, in the order given; an unknown id is an error naming it."""
        wanted = [str(i) for i in object_ids]
        index = self._id_index()
        if wanted and index is not None and len(index) == self._length:
            # One read: each id's row by its hash, the ids read with the vectors and checked; anything
            # else (an absent id, a shared hash prefix) goes the long way below.
            rows = index.candidates(wanted)
            if (rows >= 0).all():
                found = self.read_rows(rows, ["object_id", "data"])
                if (found["object_id"] == np.asarray(wanted, dtype=str)).all():
                    return found["data"]
        rows = self.rows_of(wanted)
        if (rows < 0).any():
            missing = sorted({wanted[i] for i in np.flatnonzero(rows < 0)})
            raise DataError(
                f"Object id(s) {', '.join(missing[:5])} are not in the results {self.table_path} ({self._length} objects)."
            )
        return self.read_rows(rows, ["data"])["data"]

    @property
    def table(self):
        """The results as a LanceDB table (``lancedb.open_table``), as the published Hyrax gives it:
        ``results.table.search(vector).limit(6).to_list()``, ``results.table.to_pandas()``."""
        from hyrax.plugins import optional_import

        lancedb = optional_import("lancedb", "lancedb", "ResultDataset.table")
        path = self.table_path
        return lancedb.connect(str(path.parent)).open_table(path.name.removesuffix(".lance"))

    def to_arrow(self):
        """Every row as one Arrow table (in memory: see :meth:`export` for a streamed copy)."""
        return self._lance.to_table()

    def export(self, path: str | Path, batch_size: int = 65536) -> Path:
        """Write every row to a Parquet file (``object_id``, ``data`` as fixed-size lists, the shape and
        dtype in its metadata), a batch at a time: memory stays that of one batch at any size. The file
        appears whole or not at all.

        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> with ResultWriter(run, (2,), "float32") as writer:
        ...     writer.write(np.array(["a", "b"]), np.ones((2, 2), np.float32))
        >>> import pyarrow.parquet as pq
        >>> pq.read_table(ResultDataset(data_location=run).export(run / "out.parquet")).num_rows
        2
        """

        import pyarrow.parquet as pq

        path = Path(path)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with pq.ParquetWriter(partial, self._lance.schema) as writer:
                for batch in self._lance.to_batches(batch_size=batch_size, **SCAN):
                    writer.write_batch(batch)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path

    def to_pandas(self):
        """A DataFrame with ``object_id`` and ``data`` (one array per row; a table of named columns: one
        column each), every row in memory (about
        the vectors' bytes plus 100 bytes an object: use :meth:`iter_batches` or :meth:`export` for
        millions)."""
        import pandas as pd

        table = self.to_arrow()
        return pd.DataFrame(
            {
                "object_id": table.column("object_id").to_numpy(zero_copy_only=False),
                **{key: list(self._column(table, key)) for key in self.columns},  # data, or each dict key
            }
        )


def results_record(run_dir: str | Path) -> dict[str, int]:
    """``{"results_rows", "results_version"}`` of a run's results table now: what derived results (outlier
    scores, vector indexes, maps) record about the results they were made from."""
    results = ResultDataset(data_location=table_path(run_dir))
    return {"results_rows": len(results), "results_version": results.version}


def moved_on(recorded: Mapping, run_dir: str | Path) -> list[str]:
    """How a run's results table differs from what ``recorded`` says it was (``["results_rows 300 ->
    301", ...]``); empty when it is the same table."""
    return [
        f"{key} {recorded.get(key)} -> {value}"
        for key, value in results_record(run_dir).items()
        if str(recorded.get(key)) != str(value)
    ]


def _check_finished(run_dir: Path, config) -> None:
    """Refuse a run that did not finish (its status is not "complete"), unless
    ``data_set.ResultDataset.allow_unfinished`` is true. A directory without a run status is read."""
    from hyrax.results.run_dir import STATUS_FILE, RunDir

    if not (run_dir / STATUS_FILE).is_file():
        return
    status = RunDir(run_dir).status.get("status", "unknown")
    if status == "complete":
        return
    allowed = ((config or {}).get("data_set", {}).get("ResultDataset", {}) or {}).get("allow_unfinished")
    if allowed is True:
        logger.warning("reading %s, a %s run: its results are partial", run_dir, status)
        return
    raise ResultsError(
        f"{run_dir} is a {status} run, not a complete one: its results are partial. Resume or re-run it "
        f"(hyrax infer --resume {run_dir}), or set data_set.ResultDataset.allow_unfinished = true to read "
        f"what it has."
    )


def _in_filter(ids: Sequence[str]) -> str:
    """A Lance filter selecting these ids (answered by the object_id index)."""
    return "object_id IN (" + ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids) + ")"
