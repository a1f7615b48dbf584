"""The published Hyrax's import path of :class:`~hyrax.datasets.hsc.HSCDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.hsc import HSCDataset``)."""

from hyrax.datasets.hsc import HSCDataset

__all__ = ["HSCDataset"]
