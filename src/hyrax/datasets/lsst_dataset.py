"""The published Hyrax's import path of :class:`~hyrax.datasets.lsst.LSSTDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.lsst import LSSTDataset``)."""

from hyrax.datasets.lsst import LSSTDataset

__all__ = ["LSSTDataset"]
