"""Light curves on the map are drawn as curves per band (issue 26: the resampled (bands, 4, length) array
was drawn as a striped grey image), on the real Stripe 82 RR Lyrae (tests/data/s82_rrlyrae)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.visualize.conftest import write_catalog_map

pytest.importorskip("nested_pandas")

LIGHTCURVE = {
    "column": "lc",
    "time": "time",
    "value": "mag",
    "error": "magerr",
    "band": "band",
    "bands": ["u", "g", "r", "i", "z"],
    "length": 48,
    "method": "bin",
}


def rrlyrae_parquet(real_data, path):
    """The Stripe 82 RR Lyrae as nested-pandas Parquet: one row per star, its light curve in ``lc``."""
    import nested_pandas as npd
    import pandas as pd

    folder = real_data / "s82_rrlyrae"
    periods = pd.read_csv(folder / "periods.csv", dtype={"object_id": str}).set_index("object_id", drop=False)
    flat = pd.read_parquet(folder / "lightcurves.parquet").set_index("object_id")
    npd.NestedFrame(periods).join_nested(flat, "lc").reset_index(drop=True).to_parquet(path)
    return path


def band_pixels(picture: np.ndarray) -> dict[str, int]:
    """How many pixels of each band's colour the picture has."""
    from hyrax.visualize.curves import BAND_COLOURS

    pixels = picture.reshape(-1, 3).astype(int)
    return {
        band: int((np.abs(pixels - np.array(colour)).sum(axis=1) < 60).sum())
        for band, colour in BAND_COLOURS.items()
    }


def colour_summary(picture: np.ndarray) -> tuple[int, float]:
    """(how many distinct hues, in 12 bins, have 15 or more saturated pixels; the share of pixels of
    the most common colour: a plain background)."""
    pixels = picture.reshape(-1, 3).astype(int)
    saturated = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 60]
    import colorsys

    hues = np.array([colorsys.rgb_to_hsv(*(p / 255))[0] for p in saturated])
    counts = np.bincount((hues * 12).astype(int) % 12, minlength=12) if len(hues) else np.zeros(12)
    _, common = np.unique(pixels, axis=0, return_counts=True)
    return int((counts >= 15).sum()), float(common.max() / len(pixels))


@pytest.mark.parametrize("field", ["lightcurve", "image"])  # "image": the field the built-in models read
def test_light_curve_thumbnails_are_curves_per_band(real_data, tmp_path, field):
    """The live map's thumbnail of a star: a curve per band (u g r i z) in colours of their own on a
    plain background (it was a grey striped image of the array, or no image at all)."""
    from PIL import Image

    from hyrax.visualize.live import LiveMap

    path = rrlyrae_parquet(real_data, tmp_path / "rrlyrae.parquet")
    entry = {"curves": {"dataset_class": "NestedPandasDataset", "data_location": str(path)}}
    settings = {"data_set.lightcurve": {**LIGHTCURVE, "field": field}}
    coordinates = np.random.default_rng(0).normal(size=(200, 2))
    config, run = write_catalog_map(tmp_path, coordinates, entry, settings)
    live = LiveMap(config, run)
    picture = np.asarray(Image.open(io.BytesIO(live.thumbnail_png(live.source.ids(np.array([4]))[0]))))
    assert picture.shape == (64, 64, 3)
    hues, background = colour_summary(picture)
    assert hues >= 4 and background > 0.3, (hues, background)


def test_an_array_laid_out_as_a_light_curve_is_drawn_as_one():
    """The rule for a dataset without [data_set.lightcurve] settings (a user's own): the layout."""
    from hyrax.datasets.lightcurves import Resampling, resample
    from hyrax.visualize.curves import draw_lightcurve, looks_like_lightcurve

    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 100, 120))
    bands = rng.choice(["g", "r"], 120)
    values = 18 + np.sin(times / 5) + (bands == "r")
    curve = resample(times, values, None, bands, Resampling(bands=("g", "r"), band="band", length=40), 0)
    assert looks_like_lightcurve(curve)
    assert not looks_like_lightcurve(rng.normal(size=(3, 64, 64)))  # an image
    assert not looks_like_lightcurve(rng.normal(size=(2, 4, 40)))  # four rows, but no mask row
    counts = band_pixels(draw_lightcurve(curve, {"bands": ["g", "r"]}))
    assert counts["g"] > 50 and counts["r"] > 50 and counts["u"] == 0  # each band in its colour
    empty = draw_lightcurve(np.zeros((1, 4, 16), np.float32))  # no observation: said, not a crash
    assert empty.shape == (128, 128, 3)
