"""Downloading survey cutouts: one module per service (``hsc``: the HSC-SSP das_cutout service).

``hyrax download`` (or ``h.download()``) fetches the cutouts of every object in ``download.fits_file``
into ``general.data_dir``, resumably, and records each in ``<data_dir>/manifest.parquet``;
``hyrax rebuild_manifest`` writes that manifest anew from the files on disk. ``HSCDataset`` reads the
result. Nothing heavy is imported here.
"""

from __future__ import annotations

__all__ = ["download", "rebuild_manifest"]


def download(config):
    """Download the cutouts of ``download.fits_file``; a :class:`~hyrax.download.report.DownloadSummary`."""
    from hyrax.download.downloader import download as run

    return run(config)


def rebuild_manifest(data_dir):
    """Write ``<data_dir>/manifest.parquet`` anew from the cutouts on disk; {"done": n, "failed": m}."""
    from hyrax.download.manifest import rebuild

    return rebuild(data_dir)
