"""The published Hyrax's import path of :class:`~hyrax.datasets.table.HyraxHATSDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.table import HyraxHATSDataset``)."""

from hyrax.datasets.table import HyraxHATSDataset

__all__ = ["HyraxHATSDataset"]
