"""The published Hyrax's import path of :class:`~hyrax.datasets.table.MultimodalUniverseDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.table import MultimodalUniverseDataset``)."""

from hyrax.datasets.table import MultimodalUniverseDataset

__all__ = ["MultimodalUniverseDataset"]
