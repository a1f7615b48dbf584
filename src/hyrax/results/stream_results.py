"""The results an ``infer_stream`` run kept (``<run>/stream_results.lance``), read as vectors by the verbs
that map them (``reduce_dimensions``), as they read an ``infer`` run's results table.

A stream run's table holds one row per alert written (``alert_id``, ``object_id``, the Kafka position,
times) and the model's output: ``vector`` (its shape in the schema metadata, ``tensor_shape`` = "2,3"),
or, for an ``infer_batch`` that returns a dict, one column per key, of which ``data`` is the vectors.
The table is read at the version it has when opened: a stream still running appends later versions,
which this reader does not see (``version`` says which one was read).

>>> # h.reduce_dimensions(input_dir="results/20260101-120000-infer_stream-ab12")
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hyrax.errors import ResultsError

#: Rows per read of the whole table.
_BATCH = 65536


def is_stream_run(run_dir: str | Path) -> bool:
    """True for an infer_stream run directory (its status names the verb, or it holds the stream table)."""
    from hyrax.results.run_dir import STATUS_FILE, RunDir
    from hyrax.stream.serve import RESULTS

    path = Path(run_dir)
    if (path / RESULTS).exists():
        return True
    return (path / STATUS_FILE).is_file() and RunDir(path).status.get("verb") == "infer_stream"


class StreamResults:
    """An infer_stream run's results: ``len``, ``r[rows]`` (vectors), ``iter_batches``, ``ids()``,
    ``version``; the object ids are the stream's (an object with several alerts has several rows)."""

    def __init__(self, run_dir: str | Path):
        import lance

        from hyrax.stream.serve import RESULTS

        self.data_location = Path(run_dir).expanduser()
        self.table_path = self.data_location / RESULTS
        if not any((self.table_path / "_versions").glob("*.manifest")):
            raise ResultsError(
                f"{self.data_location} is an infer_stream run that kept no results (no {RESULTS}): run "
                f"infer_stream with infer_stream.save_model_output = true to keep each object's result, then "
                f"map that run."
            )
        self._lance = lance.dataset(str(self.table_path))
        schema = self._lance.schema
        self.column = next((name for name in ("vector", "data") if name in schema.names), None)
        if self.column is None:
            raise ResultsError(
                f"The infer_stream results {self.table_path} have the columns {', '.join(schema.names)} and no "
                f"'data' column, which the verbs that read vectors use: return a 'data' key from infer_batch."
            )
        self.shape, self.dtype = _layout(schema, self.column, self.table_path)
        self._length = self._lance.count_rows()

    @property
    def version(self) -> int:
        return int(self._lance.version)

    def __len__(self) -> int:
        return self._length

    def _vectors(self, table) -> np.ndarray:
        flat = table.column(self.column).combine_chunks().values.to_numpy(zero_copy_only=False)
        return flat.reshape(len(table), *self.shape).astype(self.dtype, copy=False)

    def __getitem__(self, rows) -> np.ndarray:
        """The vector of row ``rows`` (an int), or the vectors of an array or slice of rows."""
        if isinstance(rows, int | np.integer):
            return self[np.array([int(rows)])][0]
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(self._length))
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self._length):
            raise IndexError(f"row index out of range for {self._length} results")
        return self._vectors(self._lance.take(rows, columns=[self.column]))

    def iter_batches(self, batch_size: int = _BATCH) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(object ids, vectors) in row order, a batch at a time."""
        import pyarrow as pa

        for batch in self._lance.to_batches(batch_size=batch_size, columns=["object_id", self.column]):
            table = pa.Table.from_batches([batch])
            yield table.column("object_id").to_numpy(zero_copy_only=False).astype(str), self._vectors(table)

    def ids(self) -> np.ndarray:
        return np.concatenate([ids for ids, _ in self.iter_batches()] or [np.empty(0, dtype=str)])

    def __repr__(self) -> str:
        return f"StreamResults({self.data_location}, {self._length} rows of {list(self.shape)})"


def _layout(schema, column: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one value of ``column``: ``vector``'s from ``tensor_shape`` ("2,3"), a dict key's
    from Hyrax 0.13's per-column JSON, else the fixed-size list's width."""
    import pyarrow as pa

    kind = schema.field(column).type
    if not pa.types.is_fixed_size_list(kind):
        raise ResultsError(f"The column '{column}' of {path} is not one fixed-size vector per row ({kind}).")
    metadata = schema.metadata or {}
    dtype = np.dtype(kind.value_type.to_pandas_dtype())
    shape: tuple[int, ...] = (kind.list_size,)
    if column == "vector" and metadata.get(b"tensor_shape") is not None:
        text = metadata[b"tensor_shape"].decode().strip()
        shape = tuple(int(v) for v in text.split(",")) if text else ()
    elif metadata.get(column.encode(), b"").startswith(b"{"):
        described = json.loads(metadata[column.encode()])
        shape, dtype = tuple(described["tensor_shape"]), np.dtype(described["tensor_dtype"])
    if (int(np.prod(shape)) if shape else 1) != kind.list_size:
        raise ResultsError(
            f"The infer_stream results {path}: the metadata gives '{column}' the shape {list(shape)}, but the "
            f"column holds {kind.list_size} values per row. The table was changed by hand."
        )
    return shape, dtype
