"""The published Hyrax's import path of :class:`~hyrax.results.store.ResultDataset` (kept so that code
written for it runs unchanged; write ``from hyrax.results.store import ResultDataset``)."""

from hyrax.results.store import ResultDataset

__all__ = ["ResultDataset"]
