"""Fixtures of the download tests: a local das_cutout service, catalogs, and a configured Hyrax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.download.das_server import PASSWORD, USERNAME, DasService, Faults
from tests.download.local_service import started

FILTERS = ["HSC-G", "HSC-I"]


@pytest.fixture
def service():
    """start(faults=Faults(...), shape=(32, 32)) -> a running DasService; protocol errors fail the test."""
    yield from started(lambda faults=None, **options: DasService(faults=faults or Faults(), **options))


def make_catalog(n: int = 6, seed: int = 0, tract: bool = True) -> pd.DataFrame:
    """n objects with HSC-like 17-digit ids and positions on the sky."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "object_id": [str(36411452835238206 + 1000 * i) for i in range(n)],
            "ra": np.round(rng.uniform(140, 160, n), 6),
            "dec": np.round(rng.uniform(-5, 5, n), 6),
        }
    )
    if tract:
        table["tract"] = 9813
    return table


@pytest.fixture
def catalog(tmp_path):
    """catalog(n=6, name="catalog.parquet", table=None) -> (path, DataFrame) written in that format."""

    def write(n: int = 6, name: str = "catalog.parquet", table: pd.DataFrame | None = None, **options):
        table = make_catalog(n, **options) if table is None else table
        path = tmp_path / name
        if name.endswith(".parquet"):
            table.to_parquet(path)
        elif name.endswith(".csv"):
            table.to_csv(path, index=False)
        else:
            from astropy.table import Table

            Table.from_pandas(table).write(path, overwrite=True)
        return path, table

    return write


def configure(manager_or_hyrax, service_url: str, catalog_path: Path, data_dir: Path, **settings) -> None:
    """Point [download] at a local service; quick retries. ``settings``: download keys to override."""
    set_config = manager_or_hyrax.set_config
    set_config("general.data_dir", str(data_dir))
    set_config("general.results_dir", str(data_dir.parent / "results"))
    set_config("download.service_url", service_url)
    set_config("download.fits_file", str(catalog_path))
    set_config("download.filter", FILTERS)
    set_config("download.username", USERNAME)
    set_config("download.password", PASSWORD)
    set_config("download.retry_wait", 0.01)
    set_config("download.timeout", 5)
    set_config("download.chunk_size", 5)
    set_config("download.concurrent_connections", 2)
    for key, value in settings.items():
        set_config(f"download.{key}", value)


@pytest.fixture
def hyrax_download(tmp_path, monkeypatch):
    """hyrax_download(service, catalog_path, **download_keys) -> a Hyrax set up to download into tmp/data."""
    from hyrax import Hyrax

    monkeypatch.delenv("HSC_SSP_CAS_USERNAME", raising=False)
    monkeypatch.delenv("HSC_SSP_CAS_PASSWORD", raising=False)

    def make(running: DasService, catalog_path: Path, **settings):
        h = Hyrax(setup_logging=False)
        configure(h, running.url, catalog_path, tmp_path / "data", **settings)
        return h

    return make


def check_cutouts(data_dir: Path, table: pd.DataFrame, filters=FILTERS, shape=(32, 32)) -> pd.DataFrame:
    """Every object x filter done exactly once in the manifest, its file whole, holding that object's pixels."""
    import fitsio

    from hyrax.download.manifest import read_manifest
    from tests.download.das_server import expected_pixels

    manifest = read_manifest(data_dir)
    assert not manifest.duplicated(["object_id", "filter"]).any()
    done = manifest[manifest.status == "done"]
    assert len(done) == len(table) * len(filters)
    by_id = table.set_index("object_id")
    for row in done.itertuples():
        pixels = fitsio.read(str(data_dir / row.file), ext=1)
        source = by_id.loc[row.object_id]
        assert np.array_equal(pixels, expected_pixels(source.ra, source.dec, row.filter, shape)), row.file
        assert (row.height, row.width) == shape
    files = sorted(p.name for p in data_dir.glob("*.fits"))
    assert files == sorted(done.file)
    assert not list((data_dir / ".partial").glob("*")) if (data_dir / ".partial").exists() else True
    return manifest
