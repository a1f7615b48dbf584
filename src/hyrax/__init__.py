"""Hyrax: low-code machine learning for astronomy.

>>> from hyrax import Hyrax
>>> h = Hyrax(setup_logging=False)

The public names are loaded on first use, so ``import hyrax`` and ``hyrax --help`` stay fast.
"""

from hyrax._version import __version__
from hyrax.compute import limit_malloc_arenas

limit_malloc_arenas()  # before any reader thread: see its documentation

_PUBLIC = {
    "Hyrax": "hyrax.hyrax",
    "hyrax_model": "hyrax.models",
    "HyraxDataset": "hyrax.datasets",
    "get_context": "hyrax.context",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hyrax' has no attribute '{name}'. Public names: {', '.join(__all__)}.")
