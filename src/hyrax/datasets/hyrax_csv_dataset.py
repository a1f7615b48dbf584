"""The published Hyrax's import path of :class:`~hyrax.datasets.csv.HyraxCSVDataset` (kept so that code written for
it runs unchanged; write ``from hyrax.datasets.csv import HyraxCSVDataset``)."""

from hyrax.datasets.csv import HyraxCSVDataset

__all__ = ["HyraxCSVDataset"]
