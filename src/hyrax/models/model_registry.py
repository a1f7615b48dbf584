"""The published Hyrax's import path of :func:`~hyrax.models.hyrax_model` (kept so that its notebooks
run unchanged; write ``from hyrax import hyrax_model``)."""

from hyrax.models import hyrax_model

__all__ = ["hyrax_model"]
