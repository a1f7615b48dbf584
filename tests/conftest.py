"""Shared fixtures: every test runs in its own empty working directory, so ./hyrax_config.toml and
./results never leak between tests or into the checkout."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def write_config(tmp_path):
    """write_config(text, name="config.toml") -> Path of a TOML file with the dedented text."""

    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
