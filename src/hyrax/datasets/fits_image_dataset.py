"""The published Hyrax's import path of :class:`~hyrax.datasets.fits.FitsImageDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.fits import FitsImageDataset``)."""

from hyrax.datasets.fits import FitsImageDataset

__all__ = ["FitsImageDataset"]
