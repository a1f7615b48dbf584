"""The published Hyrax's import path of :class:`~hyrax.datasets.random.HyraxRandomDataset` (kept so
that its notebooks run unchanged; write ``from hyrax.datasets.random import HyraxRandomDataset``)."""

from hyrax.datasets.random import HyraxRandomDataset

__all__ = ["HyraxRandomDataset"]
