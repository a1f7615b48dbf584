"""Helpers that write real FITS cutouts and catalogs for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_fits(path: Path, data: np.ndarray | None, primary_image: bool = False) -> Path:
    """A FITS file laid out like an HSC cutout: empty primary HDU, the image in HDU 1."""
    from astropy.io import fits

    path.parent.mkdir(parents=True, exist_ok=True)
    if primary_image:
        fits.PrimaryHDU(data).writeto(path, overwrite=True)
    else:
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data), fits.ImageHDU()]).writeto(path, overwrite=True)
    return path


@pytest.fixture
def cutouts(tmp_path):
    """make(n, filters, shape, hsc_names=False) -> (directory, catalog DataFrame rows)."""
    import pandas as pd

    def make(n=4, filters=("HSC-G", "HSC-R"), shape=(8, 8), hsc_names=False, seed=0, directory="cutouts"):
        rng = np.random.default_rng(seed)
        base = tmp_path / directory
        rows = []
        for number in range(n):
            object_id = str(1000 + number)
            for band, name in enumerate(filters):
                data = (rng.random(shape) + 10 * band).astype(np.float32)
                if hsc_names:
                    filename = f"{object_id}_coadd_150.{number:04d}_2.0000_9813_{name}.fits"
                else:
                    filename = f"images/{object_id}_{name}.fits"
                write_fits(base / filename, data)
                rows.append(
                    {"object_id": object_id, "filter": name, "filename": filename, "ra": 150 + number}
                )
        return base, pd.DataFrame(rows)

    return make
