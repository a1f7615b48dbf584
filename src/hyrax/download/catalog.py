"""The catalog of objects to download: object_id, ra, dec and an optional tract, as compact arrays.

Only the four columns are read (Parquet and CSV through pyarrow, FITS through astropy) into arrow and
numpy arrays: about 45 bytes a row and no Python object per row (10M rows of Parquet: about 3 s, with a
peak of 1.3 GB while pyarrow decodes). Column names are matched loosely:
``ra``, ``RA`` and ``# ra`` (as HSC's database exports name them) all work.

>>> import pandas as pd, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "catalog.csv"
>>> pd.DataFrame({"object_id": [1, 2], "ra": [150.1, 400.0], "dec": [2.2, 2.3]}).to_csv(path, index=False)
>>> catalog = read_download_catalog(path)
>>> len(catalog), catalog.problems()
(2, {1: 'ra = 400.0 is outside [0, 360)'})
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hyrax.errors import DataError
from hyrax.plugins import did_you_mean

if TYPE_CHECKING:
    import pyarrow as pa

REQUIRED = ("object_id", "ra", "dec")
OPTIONAL = ("tract",)
#: The tract written when the catalog has none: the service then finds it from ra and dec.
NO_TRACT = -1
_FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fts")


@dataclass
class DownloadCatalog:
    """Rows ``offset .. offset + len`` of the catalog file."""

    object_ids: pa.Array  # strings
    ra: np.ndarray  # float64, degrees
    dec: np.ndarray
    tract: np.ndarray  # int64, NO_TRACT where unknown
    source: Path
    offset: int = 0
    extra: dict[str, pa.Array] = field(default_factory=dict)  # other columns asked for, by name

    def __len__(self) -> int:
        return len(self.ra)

    def problems(self) -> dict[int, str]:
        """{position: why it cannot be downloaded} for rows with bad coordinates or object ids."""
        import pyarrow.compute as pc

        ra, dec = self.ra, self.dec
        with np.errstate(invalid="ignore"):
            bad_ra = ~((ra >= 0) & (ra < 360))
            bad_dec = ~((dec >= -90) & (dec <= 90))
        ids = self.object_ids
        bad_id = np.asarray(
            pc.fill_null(
                pc.or_(pc.equal(pc.utf8_length(ids), 0), pc.match_substring_regex(ids, r"[_/\s]")), True
            )
        )
        problems = {}
        for position in np.flatnonzero(bad_ra | bad_dec | bad_id):
            if bad_id[position]:
                value = ids[position].as_py()
                problems[int(position)] = (
                    "object_id is empty"
                    if not value
                    else f"object_id {value!r} contains '_', '/' or a space, which cutout file names cannot hold"
                )
            elif bad_ra[position]:
                problems[int(position)] = f"ra = {ra[position]} is outside [0, 360)"
            else:
                problems[int(position)] = f"dec = {dec[position]} is outside [-90, 90]"
        return problems


def read_download_catalog(
    path: str | Path, offset: int = 0, num_sources: int | None = None, extra: tuple[str, ...] = ()
) -> DownloadCatalog:
    """Read ``path`` (FITS, Parquet or CSV), keep rows ``offset .. offset + num_sources``, check its ids.
    ``extra``: other columns to read too (by their exact names; missing ones are an error)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"The download catalog download.fits_file = '{path}' does not exist. Point it at a FITS, Parquet or "
            f"CSV file with columns object_id, ra, dec (and optionally tract)."
        )
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            columns = _read_parquet(path, extra)
        elif name.endswith(".csv"):
            columns = _read_csv(path, extra)
        elif name.endswith(_FITS_SUFFIXES):
            columns = _read_fits(path, extra)
        else:
            raise DataError(
                f"The download catalog '{path}' is not a FITS (.fits), Parquet (.parquet) or CSV (.csv) file. "
                f"Convert it to one of them."
            )
    except DataError:
        raise
    except Exception as error:  # each reader has its own errors; all mean "cannot read this catalog"
        raise DataError(
            f"Cannot read the download catalog '{path}': {type(error).__name__}: {error}."
        ) from None
    stop = None if num_sources is None else offset + num_sources
    *columns, extras = columns
    object_ids, ra, dec, tract = (column[offset:stop] for column in columns)
    extras = {name: values[offset:stop] for name, values in extras.items()}
    catalog = DownloadCatalog(object_ids, ra, dec, tract, path, offset, extras)
    _check_unique(catalog)
    return catalog


def _match_columns(names: list[str], path: Path, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """{wanted: the catalog's name for it}; a missing required column is a DataError listing them all."""
    absent = [name for name in extra if name not in names]
    if absent:
        hint = did_you_mean(absent[0], names)
        raise DataError(
            f"The download catalog '{path}' has no column{'s' if len(absent) > 1 else ''} "
            f"{', '.join(repr(a) for a in absent)}, which "
            f"download.lsst.dataset_id reads.{hint} It has: {', '.join(names[:30])}"
            f"{' ...' if len(names) > 30 else ''}. Add the column, or change the template."
        )

    def plain(name: str) -> str:
        return name.strip().lstrip("#").strip().lower()

    by_plain: dict[str, str] = {}
    for name in names:
        by_plain.setdefault(plain(name), name)
    found = {wanted: by_plain[wanted] for wanted in (*REQUIRED, *OPTIONAL) if wanted in by_plain}
    missing = [wanted for wanted in REQUIRED if wanted not in found]
    if missing:
        hint = did_you_mean(missing[0], names)
        raise DataError(
            f"The download catalog '{path}' has no column {', '.join(repr(m) for m in missing)}.{hint} It has: "
            f"{', '.join(names[:30])}{' ...' if len(names) > 30 else ''}. Rename its columns to object_id, ra, "
            f"dec (and optionally tract)."
        )
    return found


def _arrays(object_ids, ra, dec, tract, path: Path, fixed_width: bool = False):
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(object_ids) if not isinstance(object_ids, pa.Array | pa.ChunkedArray) else object_ids
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if pa.types.is_floating(ids.type):
        raise DataError(
            f"The download catalog '{path}' stores object_id as floating point numbers, which cannot hold "
            f"HSC's 17-digit ids exactly. Store them as integers or strings."
        )
    if pa.types.is_binary(ids.type) or pa.types.is_large_binary(ids.type):
        ids = ids.cast(pa.string())
    ids = ids.cast(pa.string())
    if fixed_width:  # FITS pads strings with spaces
        ids = pc.utf8_trim_whitespace(ids)
    try:
        ra_values = _float_column(ra)
        dec_values = _float_column(dec)
    except (TypeError, ValueError, pa.ArrowInvalid) as error:
        raise DataError(
            f"The download catalog '{path}' has non-numeric ra or dec values ({error})."
        ) from None
    if tract is None:
        tract_values = np.full(len(ra_values), NO_TRACT, dtype=np.int64)
    else:
        tract_float = _float_column(tract)
        tract_values = np.where(np.isfinite(tract_float), tract_float, NO_TRACT).astype(np.int64)
        tract_values[tract_values < 0] = NO_TRACT
    return ids, ra_values, dec_values, tract_values


def _float_column(values) -> np.ndarray:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


def _extras(table, extra: tuple[str, ...]) -> dict:
    """The extra columns as Arrow arrays of strings (image IDs and the like)."""
    import pyarrow as pa

    columns = {}
    for name in extra:
        column = table[name]
        column = (
            pa.array(np.asarray(column)) if not isinstance(column, pa.Array | pa.ChunkedArray) else column
        )
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        columns[name] = column.cast(pa.string())
    return columns


def _read_parquet(path: Path, extra: tuple[str, ...] = ()):
    import pyarrow.parquet as pq

    found = _match_columns(pq.read_schema(path).names, path, extra)
    table = pq.read_table(path, columns=list(dict.fromkeys([*found.values(), *extra])))
    arrays = _arrays(*(table[found[c]] if c in found else None for c in (*REQUIRED, *OPTIONAL)), path)
    return (*arrays, _extras(table, extra))


def _read_csv(path: Path, extra: tuple[str, ...] = ()):
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    found = _match_columns(header, path, extra)
    table = arrow_csv.read_csv(
        path,
        convert_options=arrow_csv.ConvertOptions(
            include_columns=list(dict.fromkeys([*found.values(), *extra])),
            column_types={found["object_id"]: pa.string(), **{name: pa.string() for name in extra}},
        ),
    )
    arrays = _arrays(*(table[found[c]] if c in found else None for c in (*REQUIRED, *OPTIONAL)), path)
    return (*arrays, _extras(table, extra))


def _read_fits(path: Path, extra: tuple[str, ...] = ()):
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdus:
        table = next((hdu for hdu in hdus if isinstance(hdu, fits.BinTableHDU | fits.TableHDU)), None)
        if table is None:
            raise DataError(f"The download catalog '{path}' holds no table (no FITS table HDU).")
        found = _match_columns(list(table.columns.names), path, extra)
        data = table.data
        columns = [_native(np.array(data[found[c]])) if c in found else None for c in (*REQUIRED, *OPTIONAL)]
        extras = {name: np.char.strip(np.asarray(data[name]).astype(str)) for name in extra}
    return (*_arrays(*columns, path, fixed_width=True), _extras(extras, extra))


def _native(values: np.ndarray) -> np.ndarray:
    """FITS stores numbers big-endian; arrow takes native byte order only."""
    return values.astype(values.dtype.newbyteorder("=")) if values.dtype.byteorder == ">" else values


def _check_unique(catalog: DownloadCatalog) -> None:
    """A repeated object_id would name two objects' cutouts the same: an error naming some of them."""
    repeated = _repeated_ids(catalog.object_ids)
    if repeated:
        raise DataError(
            f"The download catalog '{catalog.source}' lists some object_ids more than once ({', '.join(repeated)}"
            f"{' ...' if len(repeated) == 5 else ''}). Cutout files are named by object_id: remove the repeated "
            f"rows."
        )


def _repeated_ids(ids: pa.Array) -> list[str]:
    """Up to 5 ids that occur more than once. Integer ids (HSC's) are sorted as numbers: 10M in about a
    second, where hashing 10M strings takes several and twice the memory."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(ids) < 2:
        return []
    digits = pc.all(pc.utf8_is_digit(ids)).as_py()
    if digits and pc.max(pc.utf8_length(ids)).as_py() <= 18 and not pc.any(pc.starts_with(ids, "0")).as_py():
        numbers = np.sort(ids.cast(pa.int64()).to_numpy())
        return [str(n) for n in np.unique(numbers[1:][numbers[1:] == numbers[:-1]])[:5]]
    if len(pc.unique(ids)) == len(ids):
        return []
    counts = pc.value_counts(ids)
    return [
        str(item["values"]) for item in counts.filter(pc.greater(counts.field("counts"), 1))[:5].to_pylist()
    ]
