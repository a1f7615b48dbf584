"""Rubin (LSST) cutouts: ``LSSTDataset`` cuts them as objects are read, ``DownloadedLSSTDataset`` reads
what ``hyrax download`` fetched.

``LSSTDataset`` takes a catalog (``data_location``, else ``data_set.astropy_table``: FITS, Parquet, CSV
or anything astropy reads) with an object id (``object_id`` or ``objectId``, or
``data_set.object_id_column_name``) and a position (``ra``/``dec`` or ``coord_ra``/``coord_dec``, in
degrees). Reading an object asks for its cutout in every band of ``data_set.filters`` (else ugrizy),
``2 * data_set.semi_width_deg`` by ``2 * data_set.semi_height_deg``:

* from the Rubin Science Platform's SODA cutout service, ``[download.lsst]`` (its address, the image
  ID template of catalog columns, the shape; the token from ``download.lsst.token_file`` or the
  environment), with ``[download]``'s retries and time-out. This path is the one the tests run
  (against a local SODA service cutting real HSC images);
* or, where ``lsst.daf.butler`` imports (on the RSP) and ``data_set.butler_repo`` is set, from the
  Butler's ``deep_coadd`` images (``butler_collection``, ``skymap``), reading only the cutout's pixels.
  This path cannot run here (no Butler) and is not tested by this repository.

A cutout the service cannot give is an error naming the object, band and reason: for a large catalog
download first (``download.service = "lsst"``; failures are recorded, not fatal) and read the result
with ``DownloadedLSSTDataset``, a directory of ``<object_id>_soda_<ra>_<dec>_<band>.fits`` files and
their ``manifest.parquet`` (bands stacked ugrizy, the most common size, others cropped or dropped as
HSCDataset does).

Every catalog column is a field too (ra, dec, magnitudes...), so an LSSTDataset joins other datasets by
id like any other.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.catalog import read_table
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.hsc import HSCDataset
from hyrax.datasets.images import ImagePipeline
from hyrax.errors import ConfigError, DataError, HyraxError
from hyrax.plugins import did_you_mean

logger = logging.getLogger(__name__)

ID_NAMES = ("object_id", "objectId")
POSITION_NAMES = (("ra", "dec"), ("coord_ra", "coord_dec"))


class LSSTDataset(HyraxDataset):
    """Rubin cutouts at a catalog's positions, fetched as each object is read; fields ``image`` (bands x
    height x width), ``object_id`` and the catalog's columns."""

    #: What ``"auto"`` means for this dataset's images (see :mod:`hyrax.datasets.images`).
    image_defaults = {"normalize": "arcsinh", "nan_mode": "zero"}

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        catalog = read_cutout_catalog(config, data_location, "LSSTDataset", "object_id, ra and dec")
        self.data_location, table, source = catalog.location, catalog.table, catalog.source
        self.filters, self.object_ids, self.ra, self.dec = (
            catalog.filters,
            catalog.object_ids,
            catalog.ra,
            catalog.dec,
        )
        width, height = 2 * catalog.semi_width, 2 * catalog.semi_height
        if get_setting(config, "data_set.butler_repo") is not None:
            self._source = _ButlerCutouts(config, width, height)
        else:
            self._source = _SodaCutouts(config, table, width, height, source, self.filters)
        self.image_pipeline = ImagePipeline.from_config(config, type(self).__name__, self.image_defaults)
        metadata = table.rename(columns={catalog.id_column: "object_id"})
        metadata["object_id"] = self.object_ids
        scalar = [c for c in metadata.columns if metadata[c].dtype != object or c == "object_id"]
        super().__init__(config, self.data_location, metadata[scalar].reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.object_ids)

    def get_object_id(self, idx: int) -> str:
        return str(self.object_ids[idx])

    def get_image(self, idx: int) -> np.ndarray:
        """The object's cutouts, one per band, as float32 (bands, height, width)."""
        object_id = str(self.object_ids[idx])
        stacked = None
        for band_index, band in enumerate(self.filters):
            image = self._source.cutout(idx, band, float(self.ra[idx]), float(self.dec[idx]), object_id)
            if self.image_pipeline.crop_to is None:  # every object is cut to the first one's size
                self.image_pipeline.crop_to = image.shape[-2:]
                logger.info(
                    "LSSTDataset: cutouts are %dx%d pixels (set data_set.crop_to to choose)",
                    *self.image_pipeline.crop_to,
                )
            image = self.image_pipeline.clean(image, object_id)
            if stacked is None:
                stacked = np.empty((len(self.filters), *image.shape), dtype=np.float32)
            stacked[band_index] = image
        return self.image_pipeline.finish(stacked, object_id)


class DownloadedLSSTDataset(HSCDataset):
    """Rubin cutouts downloaded by ``hyrax download`` (``download.service = "lsst"``) into
    ``data_location`` (else ``general.data_dir``); fields ``image`` and ``object_id``, ``ra``, ``dec``."""

    def _no_cutouts(self) -> str:
        return (
            f"DownloadedLSSTDataset: no cutouts in {self.data_location}. Fetch them first: set "
            f'download.service = "lsst", download.fits_file to your catalog and [download.lsst], then run '
            f"`hyrax download` (or h.download()) with general.data_dir = '{self.data_location}'."
        )


@dataclass
class CutoutCatalog:
    """The objects a Rubin cutout dataset cuts out, read from its catalog and checked."""

    location: Path
    table: Any  # the catalog (pandas), for the columns a dataset reads besides these
    source: str  # how errors name it
    id_column: str
    object_ids: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    filters: list[str]
    semi_width: float  # degrees
    semi_height: float


def read_cutout_catalog(config: Mapping, data_location, name: str, columns: str) -> CutoutCatalog:
    """The catalog at DATA_LOCATION (else ``data_set.astropy_table``) of dataset NAME: its ids (unique), ra,
    dec, the bands asked for (``data_set.filters``) and the cutout's half sizes; COLUMNS says in the
    error for a missing catalog which columns it needs."""
    from hyrax.download.soda import LSST_BANDS

    path = data_location if data_location is not None else get_setting(config, "data_set.astropy_table")
    if path is None:
        raise DataError(
            f"{name} needs a catalog of the objects to cut out: set data_location (in [data_request]) or "
            f"data_set.astropy_table to a FITS, Parquet or CSV file with {columns}."
        )
    location = Path(str(path)).expanduser()
    table = read_table(location)
    source = f"{name}: the catalog '{location}'"
    id_column = _column(
        table, get_setting(config, "data_set.object_id_column_name"), ID_NAMES, source, "an object id"
    )
    ra_column, dec_column = _position_columns(table, source)
    filters = list(get_setting(config, "data_set.filters") or LSST_BANDS)
    unknown = [b for b in filters if b not in LSST_BANDS]
    if unknown:
        raise ConfigError(
            f"data_set.filters lists {', '.join(map(repr, unknown))}, which are not Rubin bands: list some of "
            f"{', '.join(LSST_BANDS)}, or false for all six."
        )
    ids = table[id_column].astype(str)
    repeated = ids[ids.duplicated()].unique()[:5]
    if len(repeated):
        raise DataError(f"{source} lists object ids {', '.join(repeated)} more than once; keep one row each.")
    semi_width = float(get_setting(config, "data_set.semi_width_deg"))
    semi_height = float(get_setting(config, "data_set.semi_height_deg"))
    if not (semi_width > 0 and semi_height > 0):
        raise ConfigError(
            "data_set.semi_width_deg and data_set.semi_height_deg must be positive (degrees; 0.00472 is "
            "17 arcsec)."
        )
    return CutoutCatalog(
        location,
        table,
        source,
        id_column,
        ids.to_numpy(),
        table[ra_column].to_numpy(dtype=np.float64),
        table[dec_column].to_numpy(dtype=np.float64),
        filters,
        semi_width,
        semi_height,
    )


def _column(table, configured, names, source: str, what: str) -> str:
    columns = [str(c) for c in table.columns]
    if configured is not None:
        if configured not in columns:
            raise DataError(
                f"{source} has no column '{configured}' (data_set.object_id_column_name)."
                f"{did_you_mean(str(configured), columns)} Its columns: {', '.join(columns[:30])}."
            )
        return str(configured)
    for name in names:
        if name in columns:
            return name
    raise DataError(
        f"{source} has no {what} column ({' or '.join(names)}). Its columns: {', '.join(columns[:30])}. Rename "
        f"one, or set data_set.object_id_column_name."
    )


def _position_columns(table, source: str) -> tuple[str, str]:
    columns = set(map(str, table.columns))
    for ra, dec in POSITION_NAMES:
        if ra in columns and dec in columns:
            return ra, dec
    raise DataError(
        f"{source} has no position columns (ra and dec, or coord_ra and coord_dec, in degrees). Its columns: "
        f"{', '.join(sorted(columns)[:30])}."
    )


def image_of(data: bytes, what: str) -> np.ndarray:
    """The first image of a (multi-extension) FITS file in memory, as float32."""
    from astropy.io import fits

    try:
        with fits.open(io.BytesIO(data)) as hdus:
            for hdu in hdus:
                if hdu.data is not None and getattr(hdu.data, "ndim", 0) >= 2 and hdu.is_image:
                    return np.asarray(hdu.data, dtype=np.float32)
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"{what}: the service sent a FITS file that cannot be read ({error}).") from None
    raise DataError(f"{what}: the service sent a FITS file without an image.")


class _SodaCutouts:
    """Cutouts from the SODA service of [download.lsst], one request per band, with [download]'s retries."""

    def __init__(self, config: Mapping, table, width: float, height: float, source: str, bands: list[str]):
        import dataclasses

        from hyrax.download.settings import DownloadSettings
        from hyrax.download.soda import SodaCutoutClient, load_token

        # [download.lsst] checked as a download checks it (template, shape, address), for these bands; the
        # cutout's size is the dataset's own (semi_width_deg / semi_height_deg)
        settings = DownloadSettings.from_config(
            {**config, "download": {**config["download"], "service": "lsst", "filter": list(bands)}}
        )
        options = dataclasses.replace(settings.soda, width_deg=width, height_deg=height)
        columns = options.columns(bands)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DataError(
                f"{source} has no column {', '.join(map(repr, missing))}, which download.lsst.dataset_id = "
                f"'{options.dataset_id}' reads to name each band's image.{did_you_mean(missing[0], list(map(str, table.columns)))} "
                f"Add the column, or change the template."
            )
        self.template = options.dataset_id
        self.columns = {c: table[c].to_numpy(dtype=object) for c in columns}
        self.client = SodaCutoutClient(
            settings.soda_url,
            load_token(config),
            options,
            settings.attempts,
            settings.retry_wait,
            settings.timeout,
        )

    def cutout(self, idx: int, band: str, ra: float, dec: float, object_id: str) -> np.ndarray:
        from hyrax.download.soda import SodaLine, fill_dataset_id

        row = {name: values[idx] for name, values in self.columns.items()}
        dataset_id = fill_dataset_id(self.template, band, row)
        what = f"LSSTDataset: object {object_id}, band {band}"
        if dataset_id is None:
            raise DataError(
                f"{what}: the catalog has no image ID (download.lsst.dataset_id = '{self.template}')."
            )
        try:
            data = self.client.cutout(SodaLine(band, ra, dec, dataset_id))
        except ConfigError:
            raise
        except HyraxError as error:
            raise DataError(
                f'{what}: no cutout ({error}). Set data_set.on_bad_object = "skip" to leave such objects out, '
                f'or download the catalog first (download.service = "lsst", which records failures) and read '
                f"it with DownloadedLSSTDataset."
            ) from None
        return image_of(data, what)


class _ButlerCutouts:  # pragma: no cover - needs lsst.daf.butler (the RSP); not importable here
    """Cutouts read from the Butler's deep_coadd images: only the cutout's pixels (a bbox read)."""

    def __init__(self, config: Mapping, width: float, height: float):
        try:
            import lsst.daf.butler  # noqa: F401
        except ImportError:
            raise ConfigError(
                "data_set.butler_repo is set, but lsst.daf.butler cannot be imported here: the Butler path runs "
                "on the Rubin Science Platform. Elsewhere set data_set.butler_repo = false to cut from the SODA "
                "service of [download.lsst]."
            ) from None
        self.repo = str(get_setting(config, "data_set.butler_repo"))
        self.collection = get_setting(config, "data_set.butler_collection")
        self.skymap_name = str(get_setting(config, "data_set.skymap"))
        self.width, self.height = width, height
        self._local = threading.local()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def _butler(self):
        butler = getattr(self._local, "butler", None)
        if butler is None:  # Butlers are not thread-safe: one per thread
            from lsst.daf.butler import Butler

            butler = self._local.butler = Butler(self.repo, collections=self.collection)
            self._local.skymap = butler.get("skyMap", skymap=self.skymap_name)
        return butler

    def cutout(self, idx: int, band: str, ra: float, dec: float, object_id: str) -> np.ndarray:
        from lsst.geom import Box2I, Extent2I, Point2I, SpherePoint, degrees

        butler = self._butler()
        point = SpherePoint(ra, dec, degrees)
        tract = self._local.skymap.findTract(point)
        patch = tract.findPatch(point)
        wcs = tract.getWcs()
        centre = wcs.skyToPixel(point)
        scale = wcs.getPixelScale(centre).asDegrees()
        half_x, half_y = round(self.width / 2 / scale), round(self.height / 2 / scale)
        box = Box2I(
            Point2I(round(centre.getX()) - half_x, round(centre.getY()) - half_y),
            Extent2I(2 * half_x + 1, 2 * half_y + 1),
        )
        if not patch.getOuterBBox().contains(box):
            raise DataError(
                f"LSSTDataset: object {object_id}: its cutout crosses the edge of patch {patch.getSequentialIndex()} "
                f"of tract {tract.getId()}. Lower data_set.semi_width_deg / semi_height_deg."
            )
        coadd = butler.get(
            "deep_coadd",
            tract=tract.getId(),
            patch=patch.getSequentialIndex(),
            band=band,
            skymap=self.skymap_name,
            parameters={"bbox": box},
        )
        return np.asarray(coadd.getImage().getArray(), dtype=np.float32)
