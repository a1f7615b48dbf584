"""The published Hyrax's import path of :class:`~hyrax.datasets.lsdb_stream.LSDBStreamDataset` (kept so that code
written for it runs unchanged; write ``from hyrax.datasets.lsdb_stream import LSDBStreamDataset``)."""

from hyrax.datasets.lsdb_stream import LSDB_URI_PREFIX, LSDBStreamDataset

__all__ = ["LSDB_URI_PREFIX", "LSDBStreamDataset"]
