"""The published Hyrax's import path of :class:`~hyrax.datasets.table.LanceDBDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.table import LanceDBDataset``)."""

from hyrax.datasets.table import LanceDBDataset

__all__ = ["LanceDBDataset"]
