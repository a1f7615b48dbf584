"""The published Hyrax's import path of :class:`~hyrax.datasets.lsst_range.RangeReadLSSTDataset` (kept so
that code written for it runs unchanged; write ``from hyrax.datasets.lsst_range import RangeReadLSSTDataset``)."""

from hyrax.datasets.lsst_range import RangeReadLSSTDataset

__all__ = ["RangeReadLSSTDataset"]
