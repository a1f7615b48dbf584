"""``FitsImageDataset``: a catalog plus one FITS cutout per object per filter.

The catalog (``data_set.filter_catalog``, else ``catalog.{parquet,fits,csv}`` in ``data_location``)
has an object id column (``object_id``), a filename column (``filename``, relative to ``data_location``)
and, for multi-band data, a filter column (``filter``: one row per object and band); rename them with
``data_set.object_id_column_name`` / ``filename_column_name`` / ``filter_column_name``. Bands are
stacked in the order of ``data_set.filters`` (else blue to red for ugrizy names, else by name). Each
image goes through the one image path (:mod:`hyrax.datasets.images`): sentinels and NaN, crop or pad to
``data_set.crop_to``, ``data_set.normalize`` (by default, per band: minus the median, over the noise,
then arcsinh, so cutouts in Jy/beam, nJy or counts train alike), ``data_set.transform``. Every other
catalog column is a field too (ra, dec, magnitudes...).

The object -> files table is built once, vectorized; reading an object costs the same at any N.

    [data_request.train.stars]
    dataset_class = "FitsImageDataset"
    data_location = "./hsc_stars"
    dataset_config = { filter_catalog = "./hsc_stars/star_cat_correct.fits",
                       object_id_column_name = "# object_id", filename_column_name = "star_filename",
                       crop_to = [24, 24] }
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.catalog import find_catalog, read_table, require_columns
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.fits_reader import read_image
from hyrax.datasets.ids import StringColumn
from hyrax.datasets.images import ImagePipeline
from hyrax.errors import DataError

logger = logging.getLogger(__name__)


_WAVELENGTH_ORDER = "UGRIZY"


def band_order(filters: list[str]) -> list[str]:
    """Filters sorted blue to red when they are the usual ugrizy bands (HSC-G, r, HSC-I2...), else by name."""

    def key(name: str) -> tuple[int, str]:
        short = name.upper().removeprefix("HSC-").rstrip("2")
        return (
            _WAVELENGTH_ORDER.index(short) if len(short) == 1 and short in _WAVELENGTH_ORDER else 99,
            name,
        )

    return sorted(filters, key=key)


class FitsImageDataset(HyraxDataset):
    """FITS cutouts listed in a catalog; fields ``image``, ``object_id`` and the catalog's columns.

    >>> from hyrax import Hyrax
    >>> h = Hyrax()
    >>> h.set_config("data_request.train.data", {"dataset_class": "FitsImageDataset",
    ...     "data_location": "./cutouts", "primary_id_field": "object_id"})  # doctest: +SKIP
    """

    #: What ``"auto"`` means for this dataset's images (see :mod:`hyrax.datasets.images`).
    image_defaults = {"normalize": "arcsinh", "nan_mode": "zero"}

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None:
            raise DataError(
                "FitsImageDataset needs a data_location: the directory its catalog's filenames are relative to."
            )
        self.data_location = Path(data_location).expanduser()
        catalog_path = get_setting(config, "data_set.filter_catalog")
        catalog_path = Path(catalog_path).expanduser() if catalog_path else find_catalog(self.data_location)
        if catalog_path is None:
            raise DataError(
                f"No catalog for FitsImageDataset: set data_set.filter_catalog, or put catalog.parquet / "
                f"catalog.fits / catalog.csv in {self.data_location}."
            )
        table = read_table(catalog_path)
        object_ids, filenames, filters, metadata = self._object_table(config, table, str(catalog_path))
        self._setup(config, object_ids, filenames, filters, metadata)
        self._freeze()
        super().__init__(config, self.data_location, self._metadata_frame)

    @staticmethod
    def _object_table(config: Mapping, table, source: str):
        """Catalog rows -> (ids, filenames [objects x bands], filters, per-object metadata)."""
        id_column = get_setting(config, "data_set.object_id_column_name") or "object_id"
        filename_column = get_setting(config, "data_set.filename_column_name") or "filename"
        filter_column = get_setting(config, "data_set.filter_column_name") or "filter"
        require_columns(
            table,
            [
                (id_column, "data_set.object_id_column_name"),
                (filename_column, "data_set.filename_column_name"),
            ],
            source,
        )
        table = table.copy()
        table[id_column] = table[id_column].astype(str)
        if filter_column not in table.columns:  # one file per object: a single band
            wide = table.set_index(id_column)[[filename_column]].rename(columns={filename_column: "image"})
            duplicated = wide.index[wide.index.duplicated()]
            if len(duplicated):
                raise DataError(
                    f"Catalog {source} lists object id(s) {', '.join(duplicated[:5])} more than once and has no "
                    f"filter column '{filter_column}'. Remove the duplicates or set data_set.filter_column_name."
                )
            metadata = table.drop(columns=[filename_column]).rename(columns={id_column: "object_id"})
            return wide.index.to_numpy(), wide.to_numpy(), ["image"], metadata
        pairs = table[[id_column, filter_column]]
        duplicated = pairs[pairs.duplicated()]
        if len(duplicated):
            first = duplicated.iloc[0]
            raise DataError(
                f"Catalog {source} lists object {first[id_column]} in filter {first[filter_column]} "
                f"{int(pairs.duplicated(keep=False).sum())} times in all; keep one row per object and filter."
            )
        wide = table.pivot(index=id_column, columns=filter_column, values=filename_column)
        # pivot sorts ids; keep the catalog's own order of first appearance.
        order = table[id_column].drop_duplicates()
        wide = wide.loc[order, band_order([str(f) for f in wide.columns])]
        metadata = (
            table.drop(columns=[filename_column, filter_column])
            .drop_duplicates(subset=[id_column])
            .rename(columns={id_column: "object_id"})
        )
        return wide.index.to_numpy(), wide.to_numpy(), [str(f) for f in wide.columns], metadata

    def _setup(self, config: Mapping, object_ids, filenames, filters: list[str], metadata) -> None:
        """Choose bands, drop objects missing one (with a summary), prepare crop and transform."""
        wanted = get_setting(config, "data_set.filters")
        if wanted is not None:
            unknown = [f for f in wanted if f not in filters]
            if unknown:
                raise DataError(
                    f"data_set.filters asks for {', '.join(unknown)}, which no object has. Filters found: "
                    f"{', '.join(filters)}."
                )
            columns = [filters.index(f) for f in wanted]
            filenames, filters = filenames[:, columns], list(wanted)
        complete = np.array([all(isinstance(n, str) and n for n in row) for row in filenames], dtype=bool)
        if not complete.all():
            dropped = np.asarray(object_ids)[~complete]
            logger.warning(
                "%s: dropped %d of %d objects missing a band of %s (e.g. %s)",
                type(self).__name__,
                len(dropped),
                len(object_ids),
                ", ".join(filters),
                ", ".join(map(str, dropped[:5])),
            )
            keep = set(np.asarray(object_ids)[complete])
            metadata = metadata[metadata["object_id"].isin(keep)]
        self.dropped = {"missing band": int((~complete).sum())}
        self.object_ids = np.asarray(object_ids)[complete].astype(str)
        self._file_table = filenames[complete]  # objects x bands, until _freeze
        self.filters = filters
        self.image_pipeline = ImagePipeline.from_config(config, type(self).__name__, self.image_defaults)
        self._hdu_hints = [[None] for _ in filters]
        self._base = str(self.data_location)
        # Joining strings by hand is 10x cheaper than os.path.join in the per-object hot loop; absolute
        # filenames in the catalog need the real join.
        absolute = any(str(name).startswith(os.sep) for name in self._file_table.ravel()[:1000])
        self._prefix = None if absolute else self._base.rstrip(os.sep) + os.sep
        self._metadata_frame = metadata.reset_index(drop=True)

    def _freeze(self) -> None:
        """Keep ids and file names compact: one Arrow buffer per band instead of a Python string per
        file (~75 bytes each, and copied into every DataLoader worker that reads them)."""
        self.object_ids = StringColumn(self.object_ids)
        table = self._file_table
        self._band_files = [StringColumn(table[:, band]) for band in range(len(self.filters))]
        del self._file_table

    @property
    def filenames(self) -> np.ndarray:
        """File names, objects x bands (a numpy array made on request)."""
        return np.stack([np.asarray(files) for files in self._band_files], axis=1)

    def __len__(self) -> int:
        return len(self.object_ids)

    def get_object_id(self, idx: int) -> str:
        return self.object_ids[idx]

    def get_image(self, idx: int) -> np.ndarray:
        """The object's bands as one float32 array (bands, height, width)."""
        object_id = self.object_ids[idx]
        prefix = self._prefix
        stacked = None
        for band, files in enumerate(self._band_files):
            name = files[idx]
            path = prefix + name if prefix is not None else os.path.join(self._base, name)
            image = self.image_pipeline.clean(read_image(path, object_id, self._hdu_hints[band]), object_id)
            if stacked is None:
                # One copy per band: FITS big-endian data are converted while filling the output.
                stacked = np.empty((len(self.filters), *image.shape), dtype=np.float32)
            elif image.shape != stacked.shape[1:]:
                raise DataError(
                    f"Object {object_id}: its bands have different shapes ({self.filters[0]}: "
                    f"{stacked.shape[1:]}, {self.filters[band]}: {image.shape}). Set data_set.crop_to = "
                    f"[height, width] to cut or pad every band to one size."
                )
            stacked[band] = image
        return self.image_pipeline.finish(stacked, object_id)

    def column(self, field: str) -> np.ndarray:
        if field == "object_id":
            return self.object_ids
        return super().column(field)
