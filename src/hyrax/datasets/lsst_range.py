"""``RangeReadLSSTDataset``: Rubin cutouts read as byte ranges of remote FITS files, without the Butler.

The catalog (``data_location``, else ``data_set.astropy_table``) gives each object an id, a position
(``ra``/``dec`` or ``coord_ra``/``coord_dec``, degrees) and, per band, the address of the file it is cut
from: ``[data_set.RangeReadLSSTDataset] url`` is a template of catalog columns (``"{url_{band}}"`` reads
the column ``url_g`` for band g), an ``http(s)://`` address or a local path. Those are the Rubin coadds
(``deep_coadd``: HDU 1 the image, then MASK and VARIANCE) a Butler's ``getURI`` or a datalink service
gives. For each object and band, only:

1. the file's headers, once per file (requests of 6 KB, doubling up to 92 KB while a header goes on;
   remembered for the last 1024 files): the WCS of the image and where each plane's data starts;
2. the rows of the cutout: ``2 * data_set.semi_height_deg`` by ``2 * semi_width_deg`` about the object
   (``data_set.crop_to`` sets the size in pixels instead), one range request per plane.

A 68 x 68 cutout of a 4200 x 4200 float32 coadd moves about 1.1 MB of its 70 MB. Bands are read in
parallel over one pooled set of connections (``connections``); time-outs, dropped connections and 5xx
answers are retried (``retries``, backoff ``retry_wait``). A file that cannot be read is an error naming
the object and address (skipped with ``data_set.on_bad_object = "skip"``); a band with no address in the
catalog is NaN, made background by the image path.

Fields: ``image`` (bands, height, width) through the one image path (:mod:`hyrax.datasets.images`),
``mask`` and ``variance`` (as stored, same shape) when ``planes`` lists them, ``object_id`` and the
catalog's columns.

    [data_request.infer.cutouts]
    dataset_class = "RangeReadLSSTDataset"
    data_location = "./objects.parquet"      # object_id, ra, dec, url_g, url_r, url_i
    primary_id_field = "object_id"
    dataset_config = { filters = ["g", "r", "i"], RangeReadLSSTDataset = { url = "{url_{band}}" } }
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.fits_ranges import Layout, RangeReader
from hyrax.datasets.ids import StringColumn
from hyrax.datasets.images import ImagePipeline
from hyrax.datasets.lsst import read_cutout_catalog
from hyrax.errors import ConfigError, DataError
from hyrax.plugins import did_you_mean

logger = logging.getLogger(__name__)

PLANES = ("image", "mask", "variance")


class RangeReadLSSTDataset(HyraxDataset):
    """Rubin cutouts read as byte ranges of each band's FITS file; fields ``image``, ``mask`` and
    ``variance`` (those in ``planes``), ``object_id`` and the catalog's columns."""

    #: What ``"auto"`` means for this dataset's images (see :mod:`hyrax.datasets.images`).
    image_defaults = {"normalize": "arcsinh", "nan_mode": "zero"}

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        name = type(self).__name__
        catalog = read_cutout_catalog(
            config,
            data_location,
            name,
            "object_id, ra, dec and each band's file address (data_set.RangeReadLSSTDataset.url)",
        )
        self.data_location, table, source = catalog.location, catalog.table, catalog.source
        self.filters = catalog.filters
        settings = config["data_set"]["RangeReadLSSTDataset"]
        self.planes = tuple(settings["planes"])
        if not self.planes or any(p not in PLANES for p in self.planes) or "image" not in self.planes:
            raise ConfigError(
                f'data_set.RangeReadLSSTDataset.planes = {list(self.planes)}: list "image" and, if wanted, '
                f'"mask" and "variance".'
            )
        self.url_template = str(settings["url"])
        self._url_columns = {}  # the catalog's columns the template reads, kept compact (Arrow strings)
        for band in self.filters:
            columns = _template_columns(self.url_template.replace("{band}", band))
            missing = [c for c in columns if c not in table.columns]
            if missing:
                raise DataError(
                    f"{source} has no column {', '.join(map(repr, missing))}, which data_set."
                    f"RangeReadLSSTDataset.url = '{self.url_template}' reads for band {band}."
                    f"{did_you_mean(missing[0], list(map(str, table.columns)))} Add the column, change the "
                    f"template or data_set.filters."
                )
            for column in columns:
                if column not in self._url_columns:
                    values = table[column].astype(object).where(table[column].notna(), None)
                    self._url_columns[column] = StringColumn(values.to_numpy())
        self.object_ids, self.ra, self.dec = catalog.object_ids, catalog.ra, catalog.dec
        self.semi_width, self.semi_height = catalog.semi_width, catalog.semi_height
        self.reader = RangeReader(
            timeout=float(settings["timeout"]),
            retries=int(settings["retries"]),
            retry_wait=float(settings["retry_wait"]),
            connections=int(settings["connections"]),
        )
        self.image_pipeline = ImagePipeline.from_config(config, name, self.image_defaults)
        #: The cutout's (height, width) in pixels: data_set.crop_to, else from the first object's pixel scale.
        self.shape = self.image_pipeline.crop_to
        self._threads = None
        metadata = table.drop(columns=sorted(self._url_columns))  # addresses may be signed: not fields
        metadata = metadata.rename(columns={catalog.id_column: "object_id"})
        metadata["object_id"] = self.object_ids
        scalar = [c for c in metadata.columns if metadata[c].dtype != object or c == "object_id"]
        super().__init__(config, self.data_location, metadata[scalar].reset_index(drop=True))

    def __getstate__(self) -> dict:  # a DataLoader worker starts its own threads
        return {**self.__dict__, "_threads": None}

    def __len__(self) -> int:
        return len(self.object_ids)

    def fields(self) -> list[str]:
        return [f for f in super().fields() if f not in PLANES or f in self.planes]

    def get_object_id(self, idx: int) -> str:
        return str(self.object_ids[idx])

    def get_image(self, idx: int) -> np.ndarray:
        """The object's cutouts, one per band, float32 (bands, height, width), through the image path."""
        object_id = str(self.object_ids[idx])
        stacked = self._cutouts(idx, "image")
        cleaned = np.empty(stacked.shape, dtype=np.float32)
        for band in range(len(self.filters)):
            cleaned[band] = self.image_pipeline.clean(stacked[band], object_id)
        return self.image_pipeline.finish(cleaned, object_id)

    def get_mask(self, idx: int) -> np.ndarray:
        """The mask planes of the cutouts (bands, height, width), bits as stored (0 where a band has no file)."""
        return self._cutouts(idx, "mask")

    def get_variance(self, idx: int) -> np.ndarray:
        """The variance planes of the cutouts (bands, height, width), float32 (NaN where a band has no file)."""
        return self._cutouts(idx, "variance")

    # -- reading ----------------------------------------------------------------------------------
    def url(self, idx: int, band: str) -> str:
        """The address of the file ``band`` of object ``idx`` is cut from ("" where the catalog has none)."""
        from hyrax.download.soda import fill_dataset_id

        template = self.url_template.replace("{band}", band)
        row = {name: self._url_columns[name][idx] for name in _template_columns(template)}
        return fill_dataset_id(template, band, row) or ""

    def _cutouts(self, idx: int, plane: str) -> np.ndarray:
        if plane not in self.planes:
            raise DataError(
                f'RangeReadLSSTDataset: field "{plane}" needs data_set.RangeReadLSSTDataset.planes to list it.'
            )
        object_id = str(self.object_ids[idx])
        urls = [self.url(idx, band) for band in self.filters]
        if self.shape is None:  # fixed by the first object read (one pixel scale for every Rubin coadd)
            first = next((u for u in urls if u), None)
            if first is not None:
                layout = self.reader.layout(first, self.planes, object_id)
                self.shape = self._box(layout, idx, object_id)[2:]
                self.image_pipeline.crop_to = self.shape
                logger.info(
                    "RangeReadLSSTDataset: cutouts are %dx%d pixels (set data_set.crop_to to choose)",
                    *self.shape,
                )
        if self.shape is None:
            raise DataError(f"Object {object_id}: the catalog gives no file address in any band.")
        if self._threads is None or self._threads[0] != os.getpid():  # a forked worker starts its own
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(
                min(self.reader.connections, len(urls)), thread_name_prefix="range-read"
            )
            self._threads = (os.getpid(), pool)
        pieces = list(self._threads[1].map(lambda url: self._cutout(url, idx, plane, object_id), urls))
        return np.stack(pieces)

    def _cutout(self, url: str, idx: int, plane: str, object_id: str) -> np.ndarray:
        if not url:  # no file for this band: missing pixels, as the published dataset fills them
            return (
                np.zeros(self.shape, np.int32) if plane == "mask" else np.full(self.shape, np.nan, np.float32)
            )
        layout = self.reader.layout(url, self.planes, object_id)
        first_row, first_column, height, width = self._box(layout, idx, object_id)
        rows = self.reader.rows(layout, plane, first_row, first_row + height, object_id)
        return np.ascontiguousarray(rows[:, first_column : first_column + width])

    def _box(self, layout: Layout, idx: int, object_id: str) -> tuple[int, int, int, int]:
        """(first row, first column, height, width) of the object's cutout in the image, 0-based."""
        import warnings

        from astropy.wcs import WCS
        from astropy.wcs.utils import proj_plane_pixel_scales

        image = layout.planes["image"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Rubin headers carry non-standard cards astropy warns about
            wcs = WCS(image.header, naxis=2)
        x, y = wcs.all_world2pix(self.ra[idx], self.dec[idx], 0)
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DataError(f"Object {object_id}: its position has no pixel in {layout.url}.")
        if self.shape is not None:
            height, width = self.shape
        else:
            scale_x, scale_y = proj_plane_pixel_scales(wcs)
            width = 2 * round(self.semi_width / scale_x) + 1
            height = 2 * round(self.semi_height / scale_y) + 1
        first_column = round(float(x)) - width // 2
        first_row = round(float(y)) - height // 2
        rows, columns = image.shape
        if first_row < 0 or first_column < 0 or first_row + height > rows or first_column + width > columns:
            raise DataError(
                f"Object {object_id}: its {height}x{width} cutout about pixel ({float(x):.1f}, {float(y):.1f}) "
                f"crosses the edge of {layout.url} ({rows}x{columns}). Lower data_set.semi_width_deg / "
                f'semi_height_deg, or set data_set.on_bad_object = "skip".'
            )
        return first_row, first_column, height, width


def _template_columns(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name]
