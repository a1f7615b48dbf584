"""Light curves of any length as arrays of one shape, so that they train the same models as images.

A light curve is a nested column (one list of times, values, errors and, for multi-band data, bands per
object). ``resample`` turns it into a float32 array of shape ``(bands, 4, length)``: for each band, four
rows, ``time`` (days since the object's first observation), ``value``, ``error`` and ``mask`` (1 where
the position holds an observation, 0 where it is padding; padding is 0 in the other rows).

Two methods, chosen by ``method``:

- ``"bin"``: the object's time span (first to last observation, or ``span`` days from the first) is
  cut into ``length`` equal bins; a bin holds the error-weighted mean of its observations (time: the bin
  centre). Deterministic.
- ``"sample"``: the observations themselves, in time order; an object with more than ``length`` of them
  in a band keeps a random subset of ``length`` (drawn from ``seed`` and the object's row, so the same
  object always gives the same array); fewer are padded at the end.

With ``normalize = true`` each band's values are shifted by their median (magnitudes become offsets
from the object's typical brightness).

>>> times, values = np.array([0.0, 1.0, 2.0, 10.0]), np.array([15.0, 15.5, 16.0, 15.0])
>>> grid = resample(times, values, None, None, Resampling(length=5, method="bin"), row=0)
>>> grid.shape, grid[0, 3].tolist()  # mask: the 5 bins of 2 days hold observations in bins 0, 1, 4
((1, 4, 5), [1.0, 1.0, 0.0, 0.0, 1.0])
>>> grid[0, 1].tolist()  # bin 0 holds 0 and 1 (mean 15.25), bin 1 holds 2, bin 4 holds 10
[15.25, 16.0, 0.0, 0.0, 15.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hyrax.errors import ConfigError

METHODS = ("bin", "sample")


@dataclass(frozen=True)
class Resampling:
    """The settings of a resampled light-curve field (``[data_set.<Dataset>.lightcurve]``)."""

    column: str = "lc"
    time: str = "mjd"
    value: str = "mag"
    error: str | None = "magerr"
    band: str | None = None
    bands: tuple[str, ...] = ()
    length: int = 64
    method: str = "bin"
    span: float | None = None
    normalize: bool = False
    seed: int = 0
    field: str = "lightcurve"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str, seed: int | None) -> Resampling:
        def value(key, default=None):
            found = settings.get(key, default)
            return default if found is False else found

        made = cls(
            column=str(value("column", "lc")),
            time=str(value("time", "mjd")),
            value=str(value("value", "mag")),
            error=value("error"),
            band=value("band"),
            bands=tuple(str(b) for b in value("bands", ()) or ()),
            length=value("length", 64),
            method=str(value("method", "bin")),
            span=value("span"),
            normalize=bool(value("normalize", False)),
            seed=int(seed or 0),
            field=str(value("field", "lightcurve")),
        )
        if made.method not in METHODS:
            raise ConfigError(f"{where}.method must be one of {', '.join(METHODS)}; got {made.method!r}.")
        if isinstance(made.length, bool) or not isinstance(made.length, int) or made.length < 1:
            raise ConfigError(f"{where}.length must be a whole number >= 1; got {made.length!r}.")
        if made.band and not made.bands:
            raise ConfigError(
                f"{where}.band = {made.band!r} needs {where}.bands: the bands to keep, in the order of the array's "
                f'first axis (e.g. bands = ["u", "g", "r", "i", "z"]).'
            )
        if made.span is not None and not (isinstance(made.span, int | float) and made.span > 0):
            raise ConfigError(f"{where}.span must be a number of days > 0, or false; got {made.span!r}.")
        return made

    @property
    def subfields(self) -> list[str]:
        """The nested column's subfields it reads."""
        return [name for name in (self.time, self.value, self.error, self.band) if name]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (max(1, len(self.bands)), 4, self.length)


def resample(
    times: np.ndarray,
    values: np.ndarray,
    errors: np.ndarray | None,
    bands: np.ndarray | None,
    settings: Resampling,
    row: int,
) -> np.ndarray:
    """One object's light curve as a ``settings.shape`` float32 array (see the module documentation).
    Observations with a non-finite time or value are left out."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    errors = np.ones_like(values) if errors is None else np.asarray(errors, dtype=np.float64)
    keep = np.isfinite(times) & np.isfinite(values)
    out = np.zeros(settings.shape, dtype=np.float32)
    if not keep.any():
        return out
    start = times[keep].min()
    groups = settings.bands or (None,)
    for b, band in enumerate(groups):
        chosen = keep if band is None else keep & (np.asarray(bands).astype(str) == band)
        if not chosen.any():
            continue
        t, v, e = times[chosen] - start, values[chosen], errors[chosen]
        if settings.normalize:
            v = v - np.median(v)
        if settings.method == "bin":
            out[b] = _binned(t, v, e, settings, times[keep].max() - start)
        else:
            out[b] = _sampled(t, v, e, settings, row, b)
    return out


def _binned(t, v, e, settings: Resampling, full_span: float) -> np.ndarray:
    length = settings.length
    span = settings.span or max(full_span, 1e-9)
    inside = t <= span
    t, v, e = t[inside], v[inside], e[inside]
    bins = np.minimum((t / span * length).astype(np.int64), length - 1)
    weights = 1.0 / np.where(np.isfinite(e) & (e > 0), e, 1.0) ** 2
    total = np.bincount(bins, weights, length)
    out = np.zeros((4, length), dtype=np.float32)
    filled = total > 0
    out[0] = (np.arange(length) + 0.5) * span / length
    out[1, filled] = (np.bincount(bins, weights * v, length) / np.where(filled, total, 1))[filled]
    out[2, filled] = (1.0 / np.sqrt(np.where(filled, total, 1)))[filled]
    out[3] = filled
    out[0, ~filled] = 0
    return out


def _sampled(t, v, e, settings: Resampling, row: int, band: int) -> np.ndarray:
    length = settings.length
    order = np.argsort(t, kind="stable")
    if len(order) > length:
        rng = np.random.default_rng([settings.seed, row, band])
        order = np.sort(rng.choice(order, size=length, replace=False))
        order = order[np.argsort(t[order], kind="stable")]
    count = len(order)
    out = np.zeros((4, length), dtype=np.float32)
    out[0, :count], out[1, :count], out[2, :count] = t[order], v[order], e[order]
    out[3, :count] = 1
    return out
