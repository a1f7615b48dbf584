"""``<data_dir>/manifest.parquet``: one row per object and filter, ``done`` (with its file and shape) or
``failed`` (with the reason); readable with pandas or any Parquet reader, without Hyrax.

Writing it is crash-safe and costs the same at any size:

* a download appends one small Parquet file per finished request under ``<data_dir>/.manifest_parts/``
  (written under a temporary name, then renamed), only after that request's cutouts were renamed into
  place, so a ``done`` row always names a whole file;
* :func:`consolidate` streams the manifest and the parts into a new manifest, renames it over the old
  one, and only then deletes the parts; the tokens of the runs it merged are kept in the file's metadata
  so a crash between the rename and the deletion never merges a part twice;
* one download at a time per ``data_dir`` (an OS lock, released even by ``kill -9``).

Each key (object_id, filter) appears once: a run asks only for keys that are not done, and before it
starts it removes the ``failed`` rows of the keys it will retry (:func:`prepare`).

>>> import tempfile, pathlib
>>> data_dir = pathlib.Path(tempfile.mkdtemp())
>>> with locked(data_dir):
...     PartWriter(data_dir).write([{"object_id": "1", "filter": "HSC-I", "status": "failed",
...                                   "reason": "a test"}])
...     consolidate(data_dir)
>>> read_manifest(data_dir)[["object_id", "status"]].values.tolist()
[['1', 'failed']]
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hyrax.datasets.hsc import MANIFEST_NAME
from hyrax.errors import DataError, ResultsWriteError
from hyrax.faults import fault_point

if TYPE_CHECKING:
    import pyarrow as pa

PARTS_DIR = ".manifest_parts"
#: Cutouts being written; a file here was never counted as downloaded.
PARTIAL_DIR = ".partial"
LOCK_NAME = ".download.lock"
_MERGED_KEY = b"hyrax_merged_parts"
_ROWS_PER_GROUP = 262_144


def schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("object_id", pa.string()),
            ("filter", pa.string()),
            ("file", pa.string()),  # relative to data_dir; null when no file arrived
            ("status", pa.string()),  # "done" or "failed"
            ("height", pa.int32()),
            ("width", pa.int32()),
            ("reason", pa.string()),  # why it failed; null when done
            ("ra", pa.float64()),
            ("dec", pa.float64()),
            ("tract", pa.int64()),
        ]
    )


def conform(table: pa.Table) -> pa.Table:
    """``table`` with the manifest's columns, in order and type; a missing column is all null."""
    import pyarrow as pa

    target = schema()
    columns = [
        table[field.name].cast(field.type)
        if field.name in table.column_names
        else pa.nulls(len(table), field.type)
        for field in target
    ]
    return pa.Table.from_arrays(columns, schema=target)


def manifest_path(data_dir: Path) -> Path:
    return Path(data_dir) / MANIFEST_NAME


def read_manifest(data_dir: Path, columns: Sequence[str] | None = None):
    """The manifest as a pandas DataFrame (empty, with every column, when there is none)."""
    import pyarrow.parquet as pq

    path = manifest_path(data_dir)
    if not path.is_file():
        return schema().empty_table().to_pandas()
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def locked(data_dir: Path):
    """Hold ``data_dir``'s download lock; a second download into the same directory is an error."""
    from hyrax import locks

    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(data_dir, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise ResultsWriteError(
            f"Cannot write in general.data_dir = '{data_dir}': {error.strerror}. Point it at a writable directory."
        ) from None
    return locks.exclusive(
        data_dir / LOCK_NAME,
        "download",
        lambda holder: DataError(
            f"Another hyrax download (or rebuild_manifest) is writing to '{data_dir}' ({holder}). Wait for it to "
            f"end, or give this one another general.data_dir."
        ),
    )


def clear_partial(data_dir: Path) -> None:
    """Remove cutouts left half-written by an interrupted download."""
    shutil.rmtree(Path(data_dir) / PARTIAL_DIR, ignore_errors=True)


class PartWriter:
    """Appends one part file per call under ``.manifest_parts/``, named by a per-run token and a number."""

    def __init__(self, data_dir: Path):
        self.directory = Path(data_dir) / PARTS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.token = f"{time.time_ns():x}{secrets.token_hex(3)}"
        self.count = 0

    def write(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=schema())
        if not table.num_rows:
            return
        name = f"{self.token}-{self.count:08d}.parquet"
        temporary = self.directory / f".{name}.tmp"
        try:
            pq.write_table(conform(table), temporary)
            os.replace(temporary, self.directory / name)
        except OSError as error:
            raise ResultsWriteError(
                f"Cannot write the download manifest in '{self.directory}': {error.strerror}. Free some space "
                f"and run hyrax download again: it continues where it stopped."
            ) from None
        self.count += 1


def _merged_tokens(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    if not path.is_file():
        return set()
    metadata = pq.read_schema(path).metadata or {}
    return set(json.loads(metadata.get(_MERGED_KEY, b"[]")))


def _parts(data_dir: Path) -> list[Path]:
    """The finished part files, oldest run first; half-written ones (``.*.tmp``) of a killed run are
    removed (the caller holds the lock: no live run is writing them)."""
    directory = Path(data_dir) / PARTS_DIR
    if not directory.is_dir():
        return []
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    return sorted(p for p in directory.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))


def _temporary(data_dir: Path) -> Path:
    """Where a new manifest is written before its rename: in the parts directory, so that a leftover of
    a killed run is cleaned up with the parts (never a scan of data_dir, which may hold millions of files)."""
    directory = Path(data_dir) / PARTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f".{MANIFEST_NAME}.{secrets.token_hex(4)}.tmp"


def consolidate(data_dir: Path, drop: np.ndarray | None = None) -> None:
    """Merge the part files into ``manifest.parquet`` (atomically), leaving out the manifest's rows where
    ``drop`` (one bool per current manifest row) is true. Call it holding :func:`locked`."""
    path = manifest_path(data_dir)
    merged = _merged_tokens(path)
    parts = _parts(data_dir)
    stale = [p for p in parts if p.name.split("-")[0] in merged]  # merged before a crash: only delete
    parts = [p for p in parts if p not in stale]
    if parts or drop is not None:
        _rewrite(path, parts, drop, merged)
        fault_point("manifest.merged")  # the parts are in the manifest, and still on disk
    for part in stale + parts:
        part.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty (a part still being written) or already gone
        (Path(data_dir) / PARTS_DIR).rmdir()


def _rewrite(path: Path, parts: list[Path], drop: np.ndarray | None, merged: set[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The runs whose parts this file now holds (kept as they were when only rows are dropped).
    tokens = sorted({p.name.split("-")[0] for p in parts} or merged)
    target_schema = schema().with_metadata({_MERGED_KEY: json.dumps(tokens).encode()})
    temporary = _temporary(path.parent)
    pending: list[pa.Table] = []
    rows = 0
    try:
        with pq.ParquetWriter(temporary, target_schema) as writer:

            def add(table: pa.Table) -> None:
                nonlocal rows
                pending.append(conform(table))
                rows += table.num_rows
                if rows >= _ROWS_PER_GROUP:
                    flush()

            def flush() -> None:
                nonlocal rows
                if pending:
                    writer.write_table(
                        pa.concat_tables(pending).replace_schema_metadata(target_schema.metadata)
                    )
                    pending.clear()
                    rows = 0

            if path.is_file():
                start = 0
                for batch in pq.ParquetFile(path).iter_batches(batch_size=_ROWS_PER_GROUP):
                    table = pa.Table.from_batches([batch])
                    if drop is not None:
                        table = table.filter(pa.array(~drop[start : start + batch.num_rows]))
                        start += batch.num_rows
                    add(table)
            for part in parts:
                add(pq.read_table(part))
            flush()
        fault_point("manifest.merge_written")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ResultsWriteError(
            f"Cannot write the download manifest '{path}': {error.strerror}. Free some space and run hyrax "
            f"download again: the parts under {PARTS_DIR}/ are kept."
        ) from None


def prepare(data_dir: Path, object_ids: pa.Array, filters: Sequence[str]) -> np.ndarray:
    """Bring the manifest up to date, and return ``done``: bool (objects x filters), true where the
    cutout is already downloaded. The failed rows of the other keys asked for are removed (they are
    retried now, and recorded again). Call it holding :func:`locked`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    consolidate(data_dir)
    done = np.zeros((len(object_ids), len(filters)), dtype=bool)
    path = manifest_path(data_dir)
    if not path.is_file():
        return done
    # Only the key and status columns: about 25 bytes a row, whatever the manifest's size.
    table = pq.read_table(path, columns=["object_id", "filter", "status"])
    is_done = pc.fill_null(pc.equal(table["status"], "done"), False)
    for column, name in enumerate(filters):
        ids = table["object_id"].filter(pc.and_(is_done, pc.equal(table["filter"], name)))
        if len(ids):
            found = pc.is_in(object_ids, value_set=ids.combine_chunks())
            done[:, column] = found.to_numpy(zero_copy_only=False)
    retry = pc.fill_null(
        pc.and_(pc.equal(table["status"], "failed"), pc.is_in(table["filter"], value_set=pa.array(filters))),
        False,
    )
    if pc.any(retry).as_py():
        retry = pc.fill_null(pc.and_(retry, pc.is_in(table["object_id"], value_set=object_ids)), False)
        if pc.any(retry).as_py():
            consolidate(data_dir, drop=retry.to_numpy())
    return done


def rebuild(data_dir: Path) -> dict[str, int]:
    """Write the manifest anew from the cutout files in ``data_dir``: a whole FITS file is ``done``, an
    unreadable one ``failed`` (the next download fetches it again). Returns {"done": n, "failed": m}.

    Half-written cutouts of an interrupted download and the part files are removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hyrax.datasets.hsc import parse_cutout_name
    from hyrax.download.fits_check import image_shape_of

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"'{data_dir}' is not a directory: set general.data_dir to the download directory.")
    path = manifest_path(data_dir)
    counts = {"done": 0, "failed": 0}
    with locked(data_dir):
        clear_partial(data_dir)
        _parts(data_dir)  # removes leftovers of a killed run
        temporary = _temporary(data_dir)
        rows: list[dict[str, Any]] = []
        with pq.ParquetWriter(temporary, schema().with_metadata({_MERGED_KEY: b"[]"})) as writer:
            with os.scandir(data_dir) as entries:
                for entry in entries:
                    if parse_cutout_name(entry.name) is None or not entry.is_file():
                        continue
                    try:
                        shape = image_shape_of(Path(entry.path).read_bytes())
                    except OSError:
                        shape = None
                    row = _row_from_name(entry.name, shape)
                    counts[row["status"]] += 1
                    rows.append(row)
                    if len(rows) >= 10_000:
                        writer.write_table(pa.Table.from_pylist(rows, schema=writer.schema))
                        rows.clear()
            writer.write_table(pa.Table.from_pylist(rows, schema=writer.schema))
        os.replace(temporary, path)
        shutil.rmtree(data_dir / PARTS_DIR, ignore_errors=True)
    return counts


def _row_from_name(name: str, shape: tuple[int, int] | None) -> dict[str, Any]:
    """A manifest row for a cutout file named as the downloader names them."""
    fields = name[: -len(".fits")].split("_")
    row: dict[str, Any] = {"object_id": fields[0], "filter": fields[-1], "file": name}
    if len(fields) == 6:  # HSC's <object_id>_<type>_<ra>_<dec>_<tract>_<filter>.fits
        for key, text, kind in (
            ("ra", fields[2], float),
            ("dec", fields[3], float),
            ("tract", fields[4], int),
        ):
            with contextlib.suppress(ValueError):
                row[key] = kind(text)
    elif len(fields) == 5 and fields[1] == "soda":  # Rubin's <object_id>_soda_<ra>_<dec>_<band>.fits
        for key, text in (("ra", fields[2]), ("dec", fields[3])):
            with contextlib.suppress(ValueError):
                row[key] = float(text)
    if shape is None:
        return {**row, "status": "failed", "reason": f"the file {name} is unreadable or incomplete"}
    return {**row, "status": "done", "height": shape[0], "width": shape[1]}
