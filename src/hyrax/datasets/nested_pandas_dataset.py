"""The published Hyrax's import path of :class:`~hyrax.datasets.table.NestedPandasDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.table import NestedPandasDataset``)."""

from hyrax.datasets.table import NestedPandasDataset

__all__ = ["NestedPandasDataset"]
