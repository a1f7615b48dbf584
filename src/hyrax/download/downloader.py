"""Downloading a catalog's cutouts: plan, fetch in parallel, save atomically, record, resume.

One machinery for every service: the HSC-SSP das_cutout service (:mod:`hyrax.download.hsc`, many
cutouts per request) and the Rubin Science Platform's SODA service (:mod:`hyrax.download.soda`, one
cutout per request), chosen by ``download.service``. A service's client has ``fetch(lines, receive)``
and ``stop()``; what differs (the lines of a request, the files' names) is in :class:`Service`.

The catalog is read once into compact arrays; what is already done comes from the manifest as one
boolean per object and filter. The work is then generated lazily, ``download.chunk_size`` lines at a
time, and at most two requests per connection are queued, so memory stays flat at any catalog size.

Each cutout is written under ``<data_dir>/.partial/`` and renamed into ``data_dir`` when whole; its
``done`` row is appended to the manifest only after the rename, so an interruption at any moment (even
``kill -9``) never leaves a partial file counted as done. Running again continues: done cutouts are
skipped, failed ones retried.

>>> cutout_file_name("36411452835238206", "coadd/bg", 30.591341, -6.282371, 8279, "HSC-I")
'36411452835238206_coadd-bg_30.59134_-6.28237_8279_HSC-I.fits'
>>> soda_file_name("2144", 53.16, -28.1, "r")
'2144_soda_53.16000_-28.10000_r.fits'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from hyrax.download import manifest
from hyrax.download.catalog import DownloadCatalog, read_download_catalog
from hyrax.download.client import STOPPED
from hyrax.download.credentials import Credentials, load_credentials
from hyrax.download.fits_check import image_shape_of
from hyrax.download.hsc import CutoutLine, CutoutOptions, DasCutoutClient
from hyrax.download.report import DownloadSummary, Progress
from hyrax.download.settings import DownloadSettings
from hyrax.download.soda import SodaCutoutClient, SodaLine, fill_dataset_id, load_token
from hyrax.errors import ResultsWriteError

logger = logging.getLogger(__name__)

#: Catalog rows turned into work at a time (a few MB of index arrays).
_ROWS_PER_BLOCK = 65_536


def cutout_file_name(object_id: str, image_type: str, ra: float, dec: float, tract: int, band: str) -> str:
    """``<object_id>_<type>_<ra>_<dec>_<tract>_<filter>.fits``, as :class:`~hyrax.datasets.HSCDataset`
    reads it (ra and dec with 5 decimals, about 0.04 arcsec; a "/" in the type becomes "-")."""
    return f"{object_id}_{image_type.replace('/', '-')}_{ra:.5f}_{dec:.5f}_{tract}_{band}.fits"


def soda_file_name(object_id: str, ra: float, dec: float, band: str) -> str:
    """``<object_id>_soda_<ra>_<dec>_<band>.fits``, as :class:`~hyrax.datasets.DownloadedLSSTDataset` reads it."""
    return f"{object_id}_soda_{ra:.5f}_{dec:.5f}_{band}.fits"


class Service:
    """What one cutout service needs of the download: its client, each chunk's lines, each file's name."""

    def __init__(self, settings: DownloadSettings, client, catalog: DownloadCatalog):
        self.settings, self.client, self.catalog = settings, client, catalog

    def lines(self, chunk: Chunk) -> list:
        catalog, filters = self.catalog, self.settings.filters
        return [
            CutoutLine(
                filters[band], int(catalog.tract[row]), float(catalog.ra[row]), float(catalog.dec[row])
            )
            for row, band in zip(chunk.rows, chunk.bands, strict=True)
        ]

    def file_name(self, object_id: str, line, tract: int) -> str:
        return cutout_file_name(object_id, self.settings.image_type, line.ra, line.dec, tract, line.filter)


class SodaService(Service):
    """The Rubin cutout service: each line carries its image's ID, filled from the catalog's columns."""

    def lines(self, chunk: Chunk) -> list:
        catalog, filters, template = self.catalog, self.settings.filters, self.settings.soda.dataset_id
        rows = [int(r) for r in chunk.rows]
        values = {name: column.take(rows).to_pylist() for name, column in catalog.extra.items()}
        lines = []
        for position, (row, band) in enumerate(zip(rows, chunk.bands, strict=True)):
            known = {name: column[position] for name, column in values.items()}
            dataset_id = fill_dataset_id(template, filters[band], known)
            lines.append(SodaLine(filters[band], float(catalog.ra[row]), float(catalog.dec[row]), dataset_id))
        return lines

    def file_name(self, object_id: str, line, tract: int) -> str:
        return soda_file_name(object_id, line.ra, line.dec, line.filter)


@dataclass
class Chunk:
    """Cutouts to fetch in one request: catalog positions and filter positions, one pair per line.
    ``problems`` is set for cutouts that cannot be requested (bad coordinates): recorded as failed."""

    rows: np.ndarray
    bands: np.ndarray
    problems: list[str] | None = None


@dataclass
class ChunkResult:
    """What became of each line of a chunk."""

    chunk: Chunk
    status: list[str] = field(default_factory=list)
    files: list[str | None] = field(default_factory=list)
    heights: list[int | None] = field(default_factory=list)
    widths: list[int | None] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    tracts: list[int] = field(default_factory=list)
    nbytes: int = 0

    @classmethod
    def failed(cls, chunk: Chunk, reasons: list[str | None], tracts: list[int]) -> ChunkResult:
        """Every line failed (for ``reasons``); a fetch then marks what arrives as done."""
        count = len(chunk.rows)
        nothing: list = [None] * count
        return cls(chunk, ["failed"] * count, list(nothing), list(nothing), list(nothing), reasons, tracts)


def plan(done: np.ndarray, problems: Mapping[int, str], chunk_size: int) -> Iterator[Chunk]:
    """The chunks of every (object, filter) not done, object by object, filters together."""
    bad = np.zeros(len(done), dtype=bool)
    bad[list(problems)] = True
    carry_rows = carry_bands = np.empty(0, dtype=np.int64)
    for start in range(0, len(done), _ROWS_PER_BLOCK):
        rows, bands = np.nonzero(~done[start : start + _ROWS_PER_BLOCK])
        rows = rows + start
        local = bad[rows]
        if local.any():
            yield Chunk(rows[local], bands[local], [problems[int(r)] for r in rows[local]])
        rows = np.concatenate([carry_rows, rows[~local]])
        bands = np.concatenate([carry_bands, bands[~local]])
        whole = len(rows) - len(rows) % chunk_size
        for begin in range(0, whole, chunk_size):
            yield Chunk(rows[begin : begin + chunk_size], bands[begin : begin + chunk_size])
        carry_rows, carry_bands = rows[whole:], bands[whole:]
    if len(carry_rows):
        yield Chunk(carry_rows, carry_bands)


class CutoutDownloader:
    """One download: ``CutoutDownloader.from_config(config).run()`` -> :class:`DownloadSummary`."""

    def __init__(self, settings: DownloadSettings, credentials, catalog: DownloadCatalog):
        self.settings, self.catalog = settings, catalog
        if settings.soda is not None:
            self.client = SodaCutoutClient(
                settings.soda_url,
                credentials,
                settings.soda,
                settings.attempts,
                settings.retry_wait,
                settings.timeout,
            )
            self.service: Service = SodaService(settings, self.client, catalog)
        else:
            self.client = self._das_client(settings, credentials)
            self.service = Service(settings, self.client, catalog)
        self.partial = settings.data_dir / manifest.PARTIAL_DIR
        self.parts: manifest.PartWriter | None = None
        self.progress: Progress | None = None

    @staticmethod
    def _das_client(settings: DownloadSettings, credentials: Credentials) -> DasCutoutClient:
        options = CutoutOptions(
            settings.rerun,
            settings.image_type,
            settings.width,
            settings.height,
            settings.image,
            settings.mask,
            settings.variance,
        )
        return DasCutoutClient(
            settings.service_url,
            credentials,
            options,
            settings.attempts,
            settings.retry_wait,
            settings.timeout,
        )

    @classmethod
    def from_config(cls, config: Mapping) -> CutoutDownloader:
        """Check the settings, find the credentials and read the catalog: every error before any request."""
        settings = DownloadSettings.from_config(config)
        if settings.soda is not None:
            credentials = load_token(config)
            extra = tuple(settings.soda.columns(settings.filters))
        else:
            credentials, extra = load_credentials(config), ()
        catalog = read_download_catalog(settings.catalog, settings.offset, settings.num_sources, extra)
        logger.info("download: credentials from %s", credentials.source)
        return cls(settings, credentials, catalog)

    @property
    def service_url(self) -> str:
        return self.settings.soda_url or self.settings.service_url

    def run(self) -> DownloadSummary:
        settings, catalog = self.settings, self.catalog
        requested = len(catalog) * len(settings.filters)
        with manifest.locked(settings.data_dir):
            manifest.clear_partial(settings.data_dir)
            done = manifest.prepare(settings.data_dir, catalog.object_ids, settings.filters)
            skipped = int(done.sum())
            logger.info(
                "download: %s objects x %d filters from %s into %s: %s cutouts to fetch, %s already there",
                f"{len(catalog):,}",
                len(settings.filters),
                self.service_url,
                settings.data_dir,
                f"{requested - skipped:,}",
                f"{skipped:,}",
            )
            self.partial.mkdir(parents=True, exist_ok=True)
            self.parts = manifest.PartWriter(settings.data_dir)
            self.progress = Progress(requested - skipped, skipped, settings.stats_interval)
            try:
                self._fetch_all(plan(done, catalog.problems(), settings.chunk_size))
            finally:
                self.progress.close()
                manifest.consolidate(settings.data_dir)
                manifest.clear_partial(settings.data_dir)
        summary = self.progress.summary(requested, len(catalog), len(settings.filters), settings.data_dir)
        logger.info("download finished: %s", str(summary).replace("\n", " "))
        return summary

    # -- the request loop (main thread) ------------------------------------------------------------
    def _fetch_all(self, chunks: Iterator[Chunk]) -> None:
        connections = self.settings.connections
        pool = ThreadPoolExecutor(connections, thread_name_prefix="hyrax-download")
        in_flight: set[Future] = set()
        try:
            for chunk in chunks:
                if chunk.problems is not None:
                    self._record(self._refused_locally(chunk))
                    continue
                while len(in_flight) >= 2 * connections:
                    self._collect(in_flight)
                in_flight.add(pool.submit(self._fetch, chunk))
            while in_flight:
                self._collect(in_flight)
        except BaseException:
            # Stop the other requests now, and keep what they finished: their files are in place.
            self.client.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            for future in in_flight:
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._record(future.result())
            raise
        finally:
            pool.shutdown(wait=True)

    def _collect(self, in_flight: set[Future]) -> None:
        finished, _ = wait(in_flight, timeout=self.progress.seconds_to_report(), return_when=FIRST_COMPLETED)
        for future in finished:
            in_flight.discard(future)
            self._record(future.result())
        self.progress.report_if_due()

    def _refused_locally(self, chunk: Chunk) -> ChunkResult:
        tracts = [int(t) for t in self.catalog.tract[chunk.rows]]
        return ChunkResult.failed(chunk, list(chunk.problems or []), tracts)

    def _record(self, result: ChunkResult) -> None:
        """Append the chunk's rows to the manifest (after its files were renamed into place)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rows = result.chunk.rows
        tracts = np.asarray(result.tracts, dtype=np.int64)
        table = pa.table(
            {
                "object_id": self.catalog.object_ids.take(pa.array(rows)),
                "filter": pa.array([self.settings.filters[b] for b in result.chunk.bands], pa.string()),
                "file": pa.array(result.files, pa.string()),
                "status": pa.array(result.status, pa.string()),
                "height": pa.array(result.heights, pa.int32()),
                "width": pa.array(result.widths, pa.int32()),
                "reason": pa.array(result.reasons, pa.string()),
                "ra": self.catalog.ra[rows],
                "dec": self.catalog.dec[rows],
                "tract": pa.array(tracts, pa.int64(), mask=tracts < 0),
            }
        )
        # A cutout the download stopped before is neither done nor failed: the next run asks for it.
        table = table.filter(pc.fill_null(pc.not_equal(table["reason"], STOPPED), True))
        self.parts.write(table)
        failures = [
            r for r, s in zip(result.reasons, result.status, strict=True) if s == "failed" and r != STOPPED
        ]
        self.progress.add(result.status.count("done"), failures, result.nbytes)

    # -- one request (worker threads) --------------------------------------------------------------
    def _fetch(self, chunk: Chunk) -> ChunkResult:
        ids = self.catalog.object_ids.take(chunk.rows).to_pylist()
        lines = self.service.lines(chunk)
        result = ChunkResult.failed(chunk, [None] * len(lines), [line.tract for line in lines])

        def receive(index: int, tract: int | None, data: bytes) -> str | None:
            shape = image_shape_of(data)
            if shape is None:
                return "the service sent an incomplete or unreadable FITS file"
            line = lines[index]
            tract = line.tract if tract is None else tract
            name = self.service.file_name(ids[index], line, tract)
            self._save(name, data)
            result.status[index], result.files[index], result.tracts[index] = "done", name, tract
            result.heights[index], result.widths[index] = shape
            result.reasons[index] = None
            result.nbytes += len(data)
            return None

        for index, reason in self.client.fetch(lines, receive).items():
            result.reasons[index] = reason
        return result

    def _save(self, name: str, data: bytes) -> None:
        """Write a cutout under .partial/, then rename it into data_dir: whole or absent, never half."""
        temporary = self.partial / name
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self.settings.data_dir / name)
        except OSError as error:
            raise ResultsWriteError(
                f"Cannot write the cutout {name} in general.data_dir = '{self.settings.data_dir}': "
                f"{error.strerror}. Free some space (or choose another data_dir) and run hyrax download again: "
                f"it continues where it stopped."
            ) from None


#: The name this class had when it knew only HSC.
HSCDownloader = CutoutDownloader


def download(config: Mapping) -> DownloadSummary:
    """Download the cutouts of ``download.fits_file`` as ``[download]`` says; see :mod:`hyrax.download`."""
    return CutoutDownloader.from_config(config).run()
