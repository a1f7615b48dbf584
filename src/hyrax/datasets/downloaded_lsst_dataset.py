"""The published Hyrax's import path of :class:`~hyrax.datasets.lsst.DownloadedLSSTDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.lsst import DownloadedLSSTDataset``)."""

from hyrax.datasets.lsst import DownloadedLSSTDataset

__all__ = ["DownloadedLSSTDataset"]
