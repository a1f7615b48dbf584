"""Object ids at survey scale: compact string columns, a vectorized id hash, and an id -> row index.

Held as one Python string each, a 17-character id costs about 75 bytes, and a pandas Index over them
as much again: 15 GB at 100M objects, copied into every DataLoader worker that touches it. Here:

- :class:`StringColumn`: strings in one Arrow buffer (their UTF-8 bytes plus 4 bytes each), indexable
  like a numpy array: ``column[i]`` is a ``str``, ``column[rows]`` a numpy array of ``str``. Workers
  share it without copying (reading never writes to its pages).
- :func:`id_hashes`: 64-bit FNV-1a hashes of many ids at once (numpy over the bytes, no Python loop
  per id).
- :class:`IdIndex`: the row of each id in O(log N) from sorted hash prefixes and rows (8 bytes an
  object). Every hit is checked against the real id, so a hash collision can never give a wrong row.

>>> ids = StringColumn(["J0001", "J0002", "J0003"])
>>> ids[1], ids[[2, 0]].tolist()
('J0002', ['J0003', 'J0001'])
>>> index = IdIndex.build([ids.arrow], ids.__getitem__, count=3)
>>> index.rows_of(["J0003", "nope", "J0001"]).tolist()
[2, -1, 0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
#: Candidate rows whose ids are read back at once to confirm them (a read of scattered rows from a
#: table costs memory per row: ~1.5 kB in Lance).
VERIFY_ROWS = 16384
_FNV_PRIME = np.uint64(0x100000001B3)


def arrow_strings(values: Any):
    """``values`` (Arrow, pandas, numpy of str/bytes/objects, a list, a StringColumn) as one Arrow
    string array. Numbers become their decimal text, as ``str(value)`` would give."""
    import pyarrow as pa

    if isinstance(values, StringColumn):
        return values.arrow
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not isinstance(values, pa.Array):
        array = getattr(values, "array", None)  # pandas Series/Index backed by Arrow
        if hasattr(array, "__arrow_array__"):
            values = pa.array(array)
        else:
            values = np.asarray(values)
            if values.dtype.kind in "iu":  # integer ids: Arrow writes their decimal text, as str() does
                values = pa.array(values).cast(pa.string())
            else:
                if values.dtype.kind == "S":
                    values = np.char.decode(values, "utf-8")
                elif values.dtype.kind not in "UOT":
                    values = values.astype(str)
                values = pa.array(values, type=pa.string(), from_pandas=True)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_large_string(values.type) and values.nbytes < 2**31:
        values = values.cast(pa.string())  # 4-byte offsets (pandas hands out 8-byte ones)
    elif not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    return values


class StringColumn:
    """A column of strings in one Arrow buffer, read like a 1-D numpy array of ``str``.

    ``np.asarray(column)`` gives a numpy array of every string (for code that wants one; it costs what
    numpy strings cost). Missing values (nulls) read as ``None``.
    """

    ndim = 1
    dtype = np.dtype(str)

    def __init__(self, values: Any):
        self.arrow = arrow_strings(values)

    def __len__(self) -> int:
        return len(self.arrow)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.arrow),)

    @property
    def size(self) -> int:
        return len(self.arrow)

    @property
    def nbytes(self) -> int:
        return self.arrow.nbytes

    def __getitem__(self, index):
        if isinstance(index, int | np.integer):
            return self.arrow[int(index)].as_py()
        if isinstance(index, slice):
            return _as_numpy(self.arrow[index])
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if len(index) and index.min() < 0:
            index = np.where(index < 0, index + len(self.arrow), index)
        return _as_numpy(self.arrow.take(index.astype(np.int64, copy=False)))

    def __iter__(self):
        for start in range(0, len(self.arrow), 65536):
            yield from self.arrow[start : start + 65536].to_pylist()

    def __array__(self, dtype=None, copy=None):
        values = _as_numpy(self.arrow)
        return values if dtype is None else values.astype(dtype)

    def __eq__(self, other):  # elementwise, as numpy does
        import pyarrow.compute as pc

        if isinstance(other, str):
            return pc.equal(self.arrow, other).to_numpy(zero_copy_only=False).astype(bool)
        return np.asarray(self) == np.asarray(other)

    __hash__ = None  # mutable-array semantics, like numpy

    def astype(self, dtype, copy=True):
        return np.asarray(self).astype(dtype)

    def tolist(self) -> list:
        return self.arrow.to_pylist()

    def __repr__(self) -> str:
        head = ", ".join(repr(v) for v in self.arrow[:3].to_pylist())
        return f"StringColumn([{head}{', ...' if len(self) > 3 else ''}], length={len(self)})"


def _as_numpy(array) -> np.ndarray:
    values = array.to_numpy(zero_copy_only=False)
    if array.null_count:
        return values  # object array: None stays None
    return values.astype(str) if len(values) else np.empty(0, dtype=str)


def compact(values: Any) -> Any:
    """A metadata column for keeping: strings as a :class:`StringColumn`, anything else as numpy."""
    if isinstance(values, StringColumn):
        return values
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray | pa.Array):
        kind = values.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            return StringColumn(values)
        return values.to_numpy(zero_copy_only=False)
    array = getattr(values, "array", None)
    if hasattr(array, "__arrow_array__") and str(getattr(values, "dtype", "")) in ("str", "string"):
        return StringColumn(values)
    values = np.asarray(values)
    if values.dtype.kind in "UST" or (values.dtype.kind == "O" and _all_strings(values)):
        try:
            return StringColumn(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # strings mixed with other objects: keep as they are
            return values
    return values


def _all_strings(values: np.ndarray) -> bool:
    sample = values[:1000]
    return len(values) > 0 and all(isinstance(v, str) or v is None for v in sample)


# -- hashing ----------------------------------------------------------------------------------------
def id_hashes(ids: Any) -> np.ndarray:
    """64-bit FNV-1a hash of each id's UTF-8 bytes (uint64), vectorized; a missing id is an error."""
    array = arrow_strings(ids)
    if array.null_count:
        raise ValueError(f"{array.null_count} object id(s) are missing (null); every object needs an id.")
    count = len(array)
    hashes = np.full(count, _FNV_OFFSET, dtype=np.uint64)
    if not count:
        return hashes
    import pyarrow as pa

    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if pa.types.is_large_string(array.type) else np.int32)
    offsets = offsets[array.offset : array.offset + count + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    lengths = np.diff(offsets)
    uniform = lengths.min() == lengths.max()
    for length in lengths[:1] if uniform else np.unique(lengths):
        rows = None if uniform else np.flatnonzero(lengths == length)
        starts = offsets[:-1] if rows is None else offsets[:-1][rows]
        part = hashes if rows is None else hashes[rows]
        for position in range(int(length)):
            part ^= data[starts + position]
            part *= _FNV_PRIME
        if rows is not None:
            hashes[rows] = part
    return hashes


# -- the index ----------------------------------------------------------------------------------------
class IdIndex:
    """Rows of ids in O(log N); see the module documentation.

    One sorted ``uint64`` per object: the top 32 bits of its id's hash, then its row (8 bytes an
    object, sorted in place). A 32-bit hash prefix is shared by about N / 4e9 other ids, so a look-up
    reads the id at each candidate row (``ids_at``) and keeps the one that matches.

    Args:
        keys: the sorted keys.
        ids_at: ``rows -> ids`` at those rows (a sequence of str), used to confirm every hit.
    """

    _ROWS = np.uint64(0xFFFFFFFF)

    def __init__(self, keys: np.ndarray, ids_at: Callable[[np.ndarray], Sequence[str]]):
        self.keys, self.ids_at = keys, ids_at

    @classmethod
    def build(
        cls, batches: Iterable[Any], ids_at: Callable[[np.ndarray], Sequence[str]], count: int | None = None
    ) -> IdIndex:
        """From the ids in row order, a batch at a time (each batch anything :func:`arrow_strings`
        takes; ``count``: how many in all, when known, to fill one array instead of joining pieces)."""
        parts: list[np.ndarray] = []
        keys = np.empty(count, dtype=np.uint64) if count is not None else None
        start = 0
        for batch in batches:
            part = _keys(batch, start)
            if keys is not None:
                if start + len(part) > len(keys):
                    raise ValueError(f"more than the {count} ids announced")
                keys[start : start + len(part)] = part
            else:
                parts.append(part)
            start += len(part)
        if keys is None:
            keys = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
        elif start != len(keys):
            raise ValueError(f"{start} ids for the {count} announced")
        if start >= 2**32:
            raise ValueError(f"an id index holds at most 2**32 objects, not {start}")
        keys.sort()
        return cls(keys, ids_at)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes

    def rows_of(self, ids: Any) -> np.ndarray:
        """The row of each id (int64), -1 where it is not there."""
        wanted = arrow_strings(ids)
        prefix = _prefix(id_hashes(wanted))
        low = np.searchsorted(self.keys, prefix, side="left")
        high = np.searchsorted(self.keys, prefix | self._ROWS, side="right")
        found = np.full(len(prefix), -1, dtype=np.int64)
        single = np.flatnonzero(high - low == 1)
        for start in range(0, len(single), VERIFY_ROWS):  # ids read back a bounded number at a time
            part = single[start : start + VERIFY_ROWS]
            candidates = (self.keys[low[part]] & self._ROWS).astype(np.int64)
            same = _equal(self.ids_at(candidates), wanted.take(part).to_pylist())
            found[part[same]] = candidates[same]
        for position in np.flatnonzero(high - low > 1):  # a shared hash prefix: checked one by one
            candidates = (self.keys[low[position] : high[position]] & self._ROWS).astype(np.int64)
            target = wanted[int(position)].as_py()
            hits = [
                int(r)
                for r, value in zip(candidates, self.ids_at(candidates), strict=True)
                if value == target
            ]
            if hits:
                found[position] = min(hits)
        return found

    def candidates(self, ids: Any) -> np.ndarray:
        """Each id's row by its hash alone, not yet checked against the id (int64): -1 where no key has
        its hash prefix, -2 where several do. A caller that reads the rows anyway checks the ids in the
        same read (:meth:`rows_of` reads them separately)."""
        prefix = _prefix(id_hashes(arrow_strings(ids)))
        low = np.searchsorted(self.keys, prefix, side="left")
        high = np.searchsorted(self.keys, prefix | self._ROWS, side="right")
        rows = np.where(high > low, -2, -1).astype(np.int64)
        single = np.flatnonzero(high - low == 1)
        rows[single] = (self.keys[low[single]] & self._ROWS).astype(np.int64)
        return rows

    def duplicates(self, limit: int = 5) -> tuple[int, list[str]]:
        """(how many ids occur more than once, up to ``limit`` of them, in row order)."""
        same = _shared_prefixes_in(self.keys)
        if not len(same):
            return 0, []
        # Groups of keys sharing a prefix: pairs (nearly all of them) checked at once, larger ones one by one.
        starts = same[np.concatenate([[True], np.diff(same) > 1])]
        lengths = np.searchsorted(same, starts, side="left")
        sizes = np.diff(np.append(lengths, len(same))) + 1
        repeated: dict[str, int] = {}
        pairs = starts[sizes == 2]
        if len(pairs):
            first = (self.keys[pairs] & self._ROWS).astype(np.int64)
            second = (self.keys[pairs + 1] & self._ROWS).astype(np.int64)
            values = np.asarray(self.ids_at(first)).astype(str)
            hit = values == np.asarray(self.ids_at(second)).astype(str)
            for value, row in zip(values[hit], np.minimum(first, second)[hit], strict=True):
                repeated[str(value)] = int(row)
        for start, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
            rows = (self.keys[start : start + size] & self._ROWS).astype(np.int64)
            seen: dict[str, int] = {}
            for row, value in zip(rows, self.ids_at(rows), strict=True):
                value = str(value)
                if value in seen:
                    repeated[value] = min(repeated.get(value, seen[value]), seen[value])
                else:
                    seen[value] = int(row)
        ordered = sorted(repeated, key=repeated.get)
        return len(ordered), ordered[:limit]


#: Buckets (by a key's top bits) of the on-disk sort in :func:`write_id_index`: each is sorted alone,
#: so the sort holds about 8 * N / BUCKETS bytes (3 MB at 100M objects).
BUCKETS = 256

#: Up to this many ids, :func:`write_id_index` sorts the keys in memory (8 bytes an id: 16 MB) and
#: writes the one file; above it, the bucket sort (its ~260 scratch files cost ~0.15 s, which a run of
#: 1,000 objects noticed). Both write the same file.
IN_MEMORY_IDS = 2**21


def write_id_index(
    batches: Iterable[Any], path: Path | str, count: int, in_memory_ids: int = IN_MEMORY_IDS
) -> Path:
    """Write the keys of an :class:`IdIndex` over ``count`` ids, given in row order a batch at a time,
    to ``path`` (a ``.npy`` file, opened with :func:`open_id_index`). Up to ``in_memory_ids`` ids the
    keys are sorted in memory; above, in memory bounded by a batch: the keys are spread over
    :data:`BUCKETS` files by their top bits, then each bucket is sorted into its place in the output
    (the hash prefixes are uniform, so the buckets are even). The file is the same either way, and
    appears whole or not at all.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> ids = StringColumn(["a", "b", "c"])
    >>> index = open_id_index(write_id_index([ids.arrow], folder / "ids.npy", 3), ids.__getitem__)
    >>> index.rows_of(["c", "z"]).tolist()
    [2, -1]
    """
    import contextlib
    import os
    import shutil
    import tempfile

    path = Path(path)
    if count <= in_memory_ids:
        keys = IdIndex.build(batches, ids_at=None, count=count).keys  # type: ignore[arg-type]
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as out:
                np.lib.format.write_array(out, keys, allow_pickle=False)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    partial = scratch / "keys.npy"
    try:
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(scratch / f"{b:03d}", "wb")) for b in range(BUCKETS)]
            start = 0
            for batch in batches:
                keys = _keys(batch, start)
                start += len(keys)
                if start > count:
                    raise ValueError(f"more than the {count} ids announced")
                bucket = (keys >> np.uint64(64 - 8)).astype(np.uint8)  # BUCKETS = 2**8
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1), side="left")
                keys = keys[order]
                for number in np.flatnonzero(np.diff(bounds)):
                    keys[bounds[number] : bounds[number + 1]].tofile(files[number])
        if start != count:
            raise ValueError(f"{start} ids for the {count} announced")
        if count >= 2**32:
            raise ValueError(f"an id index holds at most 2**32 objects, not {count}")
        with open(partial, "wb") as out:  # written in order, not through a memory map (its pages count)
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint64)), "fortran_order": False}
            np.lib.format.write_array_header_1_0(out, {**header, "shape": (count,)})
            for bucket in range(BUCKETS):
                keys = np.fromfile(scratch / f"{bucket:03d}", dtype=np.uint64)
                keys.sort()
                keys.tofile(out)
        os.replace(partial, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def open_id_index(path: Path | str, ids_at: Callable[[np.ndarray], Sequence[str]]) -> IdIndex:
    """The :class:`IdIndex` written by :func:`write_id_index`, read from disk as it is searched (a look-up
    touches ~log2(N) of its pages; nothing is loaded)."""
    return IdIndex(np.load(path, mmap_mode="r"), ids_at)


def _shared_prefixes_in(keys: np.ndarray, step: int = 2**20) -> np.ndarray:
    """Positions i where keys i and i + 1 share their hash prefix, found a block at a time (no copy of
    every key: 80 MB at 10M)."""
    found = []
    for start in range(0, max(0, len(keys) - 1), step):
        block = np.asarray(keys[start : start + step + 1]) >> np.uint64(32)
        found.append(np.flatnonzero(block[1:] == block[:-1]) + start)
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _keys(ids: Any, start: int) -> np.ndarray:
    """Index keys of ids at rows ``start, start + 1, ...``: hash prefix (top 32 bits) | row."""
    hashes = id_hashes(ids)
    return _prefix(hashes) | np.arange(start, start + len(hashes), dtype=np.uint64)


def _prefix(hashes: np.ndarray) -> np.ndarray:
    return (hashes >> np.uint64(32)) << np.uint64(32)


def _equal(found: Sequence[str], wanted: list[str]) -> np.ndarray:
    return np.asarray(found).astype(str) == np.asarray(wanted, dtype=str)
