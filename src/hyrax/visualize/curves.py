"""Light curves as map thumbnails: one line (with a dot per observation) per band, drawn with Pillow.

A thumbnail is drawn as light curves when its field is a resampled light curve
(:mod:`hyrax.datasets.lightcurves`): the ``field`` of the dataset's ``[data_set.lightcurve]`` (when its
``column`` is set), or any array laid out as one (:func:`looks_like_lightcurve`: shape
``(bands, 4, length)`` with length >= 8, rows time, value, error and mask, the mask only 0 or 1 and
the other rows 0 where it is 0). Time runs left to right over the object's observations, values bottom
to top; magnitudes (a value column whose name has "mag" in it: mag, magpsf, psfMag...) are drawn
brighter up. Bands take the usual colours of u, g, r, i, z, y when ``bands`` names them, else a
palette in band order.

>>> curve = np.zeros((2, 4, 16), np.float32)
>>> curve[:, 0], curve[:, 1], curve[:, 3] = np.arange(16), np.sin(np.arange(16)), 1
>>> looks_like_lightcurve(curve), draw_lightcurve(curve).shape
(True, (128, 128, 3))
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Side of the drawn picture (pixels); the map shows it at 64 x 64.
SIZE = 128
BACKGROUND = (22, 24, 30)
FRAME = (70, 74, 84)
BAND_COLOURS = {
    "u": (176, 124, 255),
    "g": (76, 200, 110),
    "r": (255, 88, 88),
    "i": (255, 176, 64),
    "z": (196, 140, 110),
    "y": (225, 225, 225),
}
PALETTE = [(100, 180, 255), (76, 200, 110), (255, 88, 88), (255, 176, 64), (176, 124, 255), (225, 225, 225)]


def lightcurve_settings(dataset) -> Mapping | None:
    """The light-curve settings of a dataset that makes a resampled light-curve field (``field``,
    ``value``, ``bands``), else None: the ones it resolved (columns and bands found in the data, held by
    the light-curve datasets of :mod:`hyrax.datasets`), else its ``[data_set.lightcurve]`` when its
    ``column`` is set."""
    from hyrax.config import get_setting

    resolved = getattr(dataset, "_resampling", None)  # hyrax.datasets.lightcurves.Resampling
    if resolved is not None and hasattr(resolved, "field"):
        return {"field": resolved.field, "value": resolved.value, "bands": list(resolved.bands or ())}
    try:
        settings = get_setting(getattr(dataset, "config", None) or {}, "data_set.lightcurve")
    except KeyError:  # a config without the key (a hand-made dataset)
        return None
    return settings if isinstance(settings, Mapping) and settings.get("column") else None


def lightcurve_field(settings: Mapping | None) -> str | None:
    """The name of the resampled light-curve field these settings make (default "lightcurve")."""
    return (settings.get("field") or "lightcurve") if settings else None


def looks_like_lightcurve(array) -> bool:
    """Whether an array has the layout of a resampled light curve (see the module documentation)."""
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    if array.ndim != 3 or array.shape[1] != 4 or array.shape[2] < 8 or array.dtype.kind not in "iuf":
        return False
    mask = array[:, 3]
    if not np.isin(mask, (0, 1)).all():
        return False
    return bool((array[:, :3][np.broadcast_to(mask[:, None] == 0, array[:, :3].shape)] == 0).all())


def draw_lightcurve(curve, settings: Mapping | None = None, size: int = SIZE) -> np.ndarray:
    """A resampled light curve (bands, 4, length) as a (size, size, 3) uint8 picture: one line and its
    dots per band (see the module documentation)."""
    from PIL import Image, ImageDraw

    curve = np.asarray(curve, dtype=np.float64)
    settings = settings or {}
    picture = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    margin = max(4, size // 16)
    draw.rectangle((1, 1, size - 2, size - 2), outline=FRAME)
    seen = (curve[:, 3] > 0) & np.isfinite(curve[:, 0]) & np.isfinite(curve[:, 1])
    if not seen.any():
        draw.text((size // 2, size // 2), "no observations", fill=(200, 200, 200), anchor="mm")
        return np.asarray(picture)
    times, values = curve[:, 0][seen], curve[:, 1][seen]
    t0, t1 = float(times.min()), float(times.max())
    v0, v1 = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    brighter_up = "mag" in str(settings.get("value") or "").lower()  # mag, magpsf, psfMag...
    span = size - 2 * margin

    def x_of(t):
        return margin + (t - t0) / (t1 - t0 if t1 > t0 else 1.0) * span

    def y_of(v):
        unit = np.clip((v - v0) / (v1 - v0 if v1 > v0 else 1.0), 0, 1)
        return margin + (unit if brighter_up else 1 - unit) * span

    names = [str(b) for b in settings.get("bands") or ()]
    for band in range(len(curve)):
        kept = seen[band]
        order = np.argsort(curve[band, 0][kept], kind="stable")
        xs, ys = x_of(curve[band, 0][kept][order]), y_of(curve[band, 1][kept][order])
        colour = _colour(names[band] if band < len(names) else None, band, len(curve))
        points = list(zip(xs.tolist(), ys.tolist(), strict=True))
        if len(points) > 1:
            draw.line(points, fill=colour, width=max(1, size // 64))
        radius = max(1.5, size / 64)
        for x, y in points:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return np.asarray(picture)


def _colour(name: str | None, band: int, bands: int) -> tuple[int, int, int]:
    if name is not None and name.lower()[-1:] in BAND_COLOURS:  # "r", "ztf_r", "HSC-R"
        return BAND_COLOURS[name.lower()[-1]]
    return PALETTE[0] if bands == 1 else PALETTE[band % len(PALETTE)]
