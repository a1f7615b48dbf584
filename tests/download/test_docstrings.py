"""The runnable examples in the download modules' docstrings run, and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "hyrax.download.catalog",
    "hyrax.download.credentials",
    "hyrax.download.downloader",
    "hyrax.download.fits_check",
    "hyrax.download.hsc",
    "hyrax.download.manifest",
    "hyrax.download.report",
    "hyrax.download.settings",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
