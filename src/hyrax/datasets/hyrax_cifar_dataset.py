"""The published Hyrax's import path of :class:`~hyrax.datasets.cifar.HyraxCifarDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.cifar import HyraxCifarDataset``)."""

from hyrax.datasets.cifar import HyraxCifarDataset

__all__ = ["HyraxCifarDataset"]
