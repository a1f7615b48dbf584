"""``LightCurveDataset``: light curves as one file per object (CSV or Parquet, long form: one row per
observation), as ZTF, SDSS Stripe 82 or a broker give them, read as they are.

    [data_request.train.curves]
    dataset_class = "LightCurveDataset"
    data_location = "./light-curves"        # 1013184.csv, 1019544.csv...: time, mag, magerr, band

The columns are found by their common spellings (time/mjd/MJD, mag/magnitude/flux, magerr/err/flux_err,
band/filter/passband; see :mod:`hyrax.datasets.lightcurves`) unless ``[data_set.lightcurve]`` names
them. Each object gives:

- ``object_id``: the file's name without its suffix (``1013184``), or ``id_column``'s value;
- ``lc``: the observations, a dict of the file's columns (batched padded, with ``<column>_mask``);
- ``lightcurve`` (``[data_set.lightcurve] field``): the light curve resampled to
  ``(bands, 4, length)`` float32 as for :class:`~hyrax.datasets.table.NestedPandasDataset`, the field the
  built-in models take;
- the columns of ``catalog`` (a CSV or Parquet table with one row per object), joined by id.

Only the list of files (and their ids) is held; a file is read when its object is asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.ids import StringColumn
from hyrax.errors import DataError

logger = logging.getLogger(__name__)

#: The files read as light curves when ``pattern`` is not set.
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
#: The catalog's id column, when ``id_column`` is not set: the first of these it has.
ID_NAMES = ("object_id", "objectid", "id", "oid", "source_id", "name")
#: Files read to find the columns' names and the bands.
FIRST_FILES = 20


class LightCurveDataset(HyraxDataset):
    """Light curves as one CSV or Parquet file per object (see the module documentation).

    ``[data_set.LightCurveDataset]``: ``pattern`` (which files), ``id_column`` (ids from a column instead
    of the file names), ``catalog`` (a table joined by id); ``[data_set.lightcurve]``: the columns and the
    resampling.

    >>> from hyrax.config import ConfigManager
    >>> dataset = LightCurveDataset(ConfigManager().config, "tests/data/s82_rrlyrae/per_object")
    >>> dataset.getter("object_id")(0), dataset.getter("lightcurve")(0).shape  # u, g, r, i, z
    ('114272', (5, 4, 64))
    """

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        from hyrax.datasets.lightcurves import Resampling, detect

        name = type(self).__name__
        if data_location is None or data_location is False:
            raise DataError(f"{name} needs data_location: a folder of light-curve files, one per object.")
        folder = Path(data_location).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"{name}: '{folder}' is not a folder. data_location is a folder holding one CSV or Parquet file "
                f"per object; a single table of many objects is read with NestedPandasDataset once nested "
                f"(see the light-curve section of the docs)."
            )
        settings = get_setting(config, f"data_set.{name}") or {}
        catalog = settings.get("catalog") or None
        catalog_path = (folder / Path(catalog).expanduser()) if catalog else None
        self.folder = folder
        self._names = StringColumn(np.asarray(_files(folder, settings.get("pattern") or None, catalog_path)))
        if not len(self._names):
            raise DataError(
                f"{name}: no light-curve files in '{folder}' (looked for "
                f"{', '.join(f'*{s}' for s in SUFFIXES)}; set data_set.{name}.pattern to choose others)."
            )
        self.id_column = settings.get("id_column") or None
        first = [self._read(i) for i in range(min(FIRST_FILES, len(self._names)))]
        columns = [c for c in first[0].columns if c != self.id_column]
        resampling = Resampling.from_settings(
            get_setting(config, "data_set.lightcurve") or {},
            "data_set.lightcurve",
            get_setting(config, "data_set.seed"),
        )
        self._resampling = detect(
            resampling,
            columns,
            "data_set.lightcurve",
            lambda band: [frame[band].to_numpy() for frame in first if band in frame],
            who=f"{name} ({self.file_at(0)})",
        )
        missing = [c for c in self._resampling.subfields if c not in columns]
        if missing:
            raise DataError(
                f"{name}: {self.file_at(0)} has no column(s) {', '.join(missing)}; its columns: "
                f"{', '.join(columns)}. Set data_set.lightcurve.time / value / error / band to names it has (or "
                f"false, to find them by their common spellings)."
            )
        self._numeric = [c for c in self._resampling.subfields if c != self._resampling.band]
        self._ids = self._object_ids()
        self._cache: tuple[int, Any] | None = None
        super().__init__(config, folder, self._catalog(catalog_path) if catalog_path else None)

    # -- the index --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._names)

    def file_at(self, idx: int) -> Path:
        return self.folder / self._names[int(idx)]

    def _object_ids(self) -> StringColumn:
        if self.id_column is None:
            return StringColumn(np.asarray([_stem(Path(n).name) for n in self._names]))
        ids = []
        for idx in range(len(self)):  # one row of each file
            frame = self._read(idx, columns=[self.id_column], rows=1)
            if not len(frame):
                raise DataError(f"{type(self).__name__}: {self.file_at(idx)} holds no observations.")
            ids.append(str(frame[self.id_column].iloc[0]))
        return StringColumn(np.asarray(ids))

    def _catalog(self, path: Path):
        """The catalog's rows in the order of the files (each file's object must have one)."""
        import pandas as pd

        from hyrax.datasets.catalog import read_table

        table = read_table(path)
        where = f"{type(self).__name__}: catalog '{path}'"
        key = self.id_column if self.id_column in table else next((c for c in ID_NAMES if c in table), None)
        if key is None:
            raise DataError(
                f"{where} has no id column ({', '.join(ID_NAMES)}, or data_set.{type(self).__name__}.id_column); "
                f"its columns: {', '.join(map(str, table.columns))}."
            )
        table = table.assign(**{key: table[key].astype(str)}).drop_duplicates(key).set_index(key)
        ids = pd.Index(np.asarray(self._ids))
        rows = table.index.get_indexer(ids)
        if (rows < 0).any():
            absent = np.asarray(self._ids)[rows < 0]
            raise DataError(
                f"{where} has no row for {len(absent)} of the {len(ids)} objects (e.g. {', '.join(absent[:5])}); "
                f"the ids are the files' names ({self._names[0]} -> {self._ids[0]}) unless id_column says. Add "
                f"the rows, or join the catalog through [data_request] with join_field instead (unmatched objects "
                f"then get empty values)."
            )
        return table.iloc[rows].reset_index(drop=True).drop(columns=["lc", "lightcurve"], errors="ignore")

    # -- reading -----------------------------------------------------------------------------------------
    def _read(self, idx: int, columns: list[str] | None = None, rows: int | None = None):
        import pandas as pd

        path = self.file_at(idx)
        try:
            if path.name.lower().endswith((".parquet", ".pq")):
                frame = pd.read_parquet(path, columns=columns)
                return frame.head(rows) if rows else frame
            return pd.read_csv(path, usecols=columns, nrows=rows)
        except Exception as error:  # every reader has its own errors; all mean "cannot read this file"
            raise DataError(
                f"Cannot read the light curve {path}: {type(error).__name__}: {error}."
            ) from error

    def _observations(self, idx: int) -> dict[str, np.ndarray]:
        """The file's columns (but the id column), without observations whose time, value or error is
        not finite (the last file read is kept: its fields are usually asked for together)."""
        idx = int(idx)
        if self._cache is not None and self._cache[0] == idx:
            return self._cache[1]
        frame = self._read(idx)
        numeric = frame[self._numeric].apply(lambda c: np.asarray(c, dtype=np.float64))
        keep = np.isfinite(numeric.to_numpy()).all(axis=1)
        found = {}
        for column in frame.columns:
            if column == self.id_column:
                continue
            values = frame[column].to_numpy()[keep]
            found[str(column)] = values.astype(str) if values.dtype.kind in "OUST" else values
        self._cache = (idx, found)
        return found

    def get_object_id(self, idx: int) -> str:
        return self._ids[int(idx)]

    def get_lc(self, idx: int) -> dict[str, np.ndarray]:
        """The observations: {column: values} (time, mag, magerr, band...)."""
        return self._observations(idx)

    def collate_lc(self, samples: list[dict]) -> dict[str, Any]:
        from hyrax.datasets.table import _padded_group

        return {"lc": _padded_group(samples, "lc")}

    def _resampled(self, idx: int) -> np.ndarray:
        from hyrax.datasets.lightcurves import resample

        settings, found = self._resampling, self._observations(idx)
        return resample(
            found[settings.time],
            found[settings.value],
            found[settings.error] if settings.error else None,
            found[settings.band] if settings.band else None,
            settings,
            int(idx),
        )

    def fields(self) -> list[str]:
        return sorted({*super().fields(), self._resampling.field})

    def getter(self, field: str):
        if field == self._resampling.field:
            return self._resampled
        return super().getter(field)

    def column(self, field: str):
        if field == "object_id":
            return self._ids
        return super().column(field)


def _stem(name: str) -> str:
    """A file's name without its suffix (``.csv.gz`` counts as one)."""
    lower = name.lower()
    suffix = next((s for s in SUFFIXES if lower.endswith(s)), Path(name).suffix)
    return name[: len(name) - len(suffix)] if suffix else name


def _files(folder: Path, pattern: str | None, catalog: Path | None) -> list[str]:
    """The light-curve files under ``folder`` (relative, sorted): those matching ``pattern`` (a glob,
    ``**`` descends folders), else every file with a suffix of :data:`SUFFIXES`, at any depth."""
    skip = catalog.resolve() if catalog is not None else None
    if pattern:
        found = (p for p in folder.glob(pattern) if p.is_file())
    else:
        found = (
            Path(root) / name
            for root, _, names in os.walk(folder)
            for name in names
            if name.lower().endswith(SUFFIXES) and not name.startswith(".")
        )
    return sorted(str(p.relative_to(folder)) for p in found if skip is None or p.resolve() != skip)
