"""The published Hyrax's import path of :class:`~hyrax.datasets.HyraxDataset` (kept so that its
notebooks run unchanged; write ``from hyrax.datasets import HyraxDataset``)."""

from hyrax.datasets.dataset import HyraxDataset

__all__ = ["HyraxDataset"]
