"""Light curves of any length as arrays of one shape, so that they train the same models as images.

A light curve is a nested column (one list of times, values, errors and, for multi-band data, bands per
object), or a file per object (:class:`~hyrax.datasets.lightcurve_files.LightCurveDataset`). ``resample``
turns it into a float32 array of shape ``(bands, 4, length)``: for each band, four rows, ``time`` (days
since the object's first observation), ``value``, ``error`` and ``mask`` (1 where the position holds an
observation, 0 where it is padding; padding is 0 in the other rows).

The columns are found by their common spellings unless named (:func:`detect`): time (``time``, ``mjd``,
``MJD``, ``jd``...), value (``mag``, ``magnitude``, ``magpsf``, ``flux``...), error (``magerr``,
``mag_err``, ``sigmapsf``, ``flux_err``, ``err``...), band (``band``, ``filter``, ``passband``, ``fid``...);
the bands, when not listed, are those of the first objects, bluest first where the band is known.

Two methods, chosen by ``method``:

- ``"bin"``: each band's observations are cut into ``length`` bins, each the error-weighted mean of its
  observations. Where the bins lie is ``span``: by default they fit the data, each bin holding about the
  same number of the object's observations, in time order (the time row holds each bin's mean time), so
  that a short event in a long, sparse baseline (a supernova) fills as many bins as it has observations;
  ``span = "full"``: ``length`` equal bins from the object's first to its last observation (time: the bin
  centre); ``span = <days>``: ``length`` equal bins of ``span / length`` days from the first observation.
  Deterministic.
- ``"sample"``: the observations themselves, in time order; an object with more than ``length`` of them
  in a band keeps a random subset of ``length`` (drawn from ``seed`` and the object's row, so the same
  object always gives the same array); fewer are padded at the end.

``normalize`` puts each object on one scale, so that a model's loss weighs every row alike:
``"standardize"`` (the default in ``[data_set.lightcurve]``): each band's values minus their median, over
their spread (1.4826 x the median absolute deviation), errors over the same spread, and the time row
in units of the bins' window (0 to 1 over the object's first to last observation); ``true`` (or
``"median"``): each band's values minus their median only (magnitudes become offsets from the object's
typical brightness); ``false``: as observed (time in days).

>>> times, values = np.array([0.0, 1.0, 2.0, 10.0]), np.array([15.0, 15.5, 16.0, 15.0])
>>> grid = resample(times, values, None, None, Resampling(length=5, span="full"), row=0)
>>> grid.shape, grid[0, 3].tolist()  # mask: the 5 bins of 2 days hold observations in bins 0, 1, 4
((1, 4, 5), [1.0, 1.0, 0.0, 0.0, 1.0])
>>> grid[0, 1].tolist()  # bin 0 holds 0 and 1 (mean 15.25), bin 1 holds 2, bin 4 holds 10
[15.25, 16.0, 0.0, 0.0, 15.0]
>>> fitted = resample(times, values, None, None, Resampling(length=5), row=0)  # span fits the data
>>> fitted[0, 0].tolist(), fitted[0, 3].tolist()  # one observation a bin, padding at the end
([0.0, 1.0, 2.0, 10.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hyrax.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

METHODS = ("bin", "sample")

#: Common spellings of each column, in order of preference (compared without case).
TIME_NAMES = ("time", "mjd", "jd", "hjd", "bjd", "mjd_obs", "obsmjd", "midpointmjdtai", "midpointtai", "t")
VALUE_NAMES = (
    "mag",
    "magnitude",
    "magpsf",
    "psfmag",
    "flux",
    "psfflux",
    "fluxcal",
    "forcediffimflux",
    "value",
)
ERROR_NAMES = (
    "magerr",
    "mag_err",
    "e_mag",
    "sigmapsf",
    "fluxerr",
    "flux_err",
    "psffluxerr",
    "fluxcalerr",
    "err",
    "error",
    "sigma",
    "uncertainty",
)
BAND_NAMES = ("band", "filter", "passband", "filtername", "bandpass", "fid", "filtercode", "flt")
#: Bands bluest first (ZTF's fid 1, 2, 3 are g, r, i); others follow, sorted.
BAND_ORDER = (
    "u",
    "U",
    "B",
    "g",
    "zg",
    "1",
    "V",
    "r",
    "zr",
    "2",
    "R",
    "i",
    "zi",
    "3",
    "I",
    "z",
    "y",
    "Y",
    "J",
    "H",
    "K",
    "Ks",
)


@dataclass(frozen=True)
class Resampling:
    """The settings of a resampled light-curve field (``[data_set.lightcurve]``); a column left None is
    found by :func:`detect`."""

    column: str = "lc"
    time: str | None = None
    value: str | None = None
    error: str | None = None
    band: str | None = None
    bands: tuple[str, ...] = ()
    length: int = 64
    method: str = "bin"
    span: float | str | None = None
    normalize: bool | str = False
    seed: int = 0
    field: str = "lightcurve"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], where: str, seed: int | None) -> Resampling:
        def value(key, default=None):
            found = settings.get(key, default)
            return default if found is False else found

        made = cls(
            column=str(value("column", "lc")),
            time=value("time"),
            value=value("value"),
            error=value("error"),
            band=value("band"),
            bands=tuple(str(b) for b in value("bands", ()) or ()),
            length=value("length", 64),
            method=str(value("method", "bin")),
            span=value("span"),
            normalize=value("normalize", False) or False,
            seed=int(seed or 0),
            field=str(value("field", "lightcurve")),
        )
        if made.normalize not in (False, True, "median", "standardize"):
            raise ConfigError(
                f'{where}.normalize must be "standardize", true (or "median": values minus their median) or '
                f"false; got {made.normalize!r}."
            )
        if made.method not in METHODS:
            raise ConfigError(f"{where}.method must be one of {', '.join(METHODS)}; got {made.method!r}.")
        if isinstance(made.length, bool) or not isinstance(made.length, int) or made.length < 1:
            raise ConfigError(f"{where}.length must be a whole number >= 1; got {made.length!r}.")
        number = isinstance(made.span, int | float) and not isinstance(made.span, bool)
        if made.span is not None and made.span != "full" and not (number and made.span > 0):
            raise ConfigError(
                f'{where}.span must be false (bins fit the data), "full" (equal bins from the first to the last '
                f"observation) or a number of days > 0; got {made.span!r}."
            )
        return made

    @property
    def subfields(self) -> list[str]:
        """The nested column's subfields it reads."""
        return [name for name in (self.time, self.value, self.error, self.band) if name]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (max(1, len(self.bands)), 4, self.length)


def detect(
    settings: Resampling,
    names: Sequence[str],
    where: str,
    band_values: Callable[[str], Iterable[Any]] | None = None,
    who: str = "",
) -> Resampling:
    """``settings`` with the columns left None found among ``names`` by their common spellings (see the
    module documentation), and, when there is a band column and no ``bands``, the bands that
    ``band_values(band column)`` yields, bluest first. A missing time or value column is a
    :class:`DataError` (``who``: the dataset, for the message) listing ``names`` and the keys that name
    them."""
    found: dict[str, Any] = {}
    time = settings.time or _choose(names, TIME_NAMES)
    value = settings.value or _choose(names, VALUE_NAMES)
    if time is None or value is None:
        role, key = ("time", "time") if time is None else ("value (magnitude or flux)", "value")
        raise DataError(
            f"{who or where}: no {role} column among {', '.join(map(str, names)) or '(none)'}; name it with "
            f"{where}.{key} (the columns looked for: "
            f"{', '.join(TIME_NAMES if time is None else VALUE_NAMES)})."
        )
    found["time"], found["value"] = time, value
    if settings.error is None:
        own = [f"{value}err", f"{value}_err", f"{value}error", f"{value}_error", f"e_{value}", f"{value}_unc"]
        own += [f"sigma{value.removeprefix('mag')}", f"{value}_sigma"]
        found["error"] = _choose(names, [n.lower() for n in own] + list(ERROR_NAMES))
    band = settings.band or _choose(names, BAND_NAMES)
    found["band"] = band
    if band and not settings.bands and band_values is not None:
        found["bands"] = ordered_bands(band_values(band))
        logger.info(
            "%s: the bands %s (found in the first objects; set %s.bands to choose them and their order)",
            who or where,
            ", ".join(found["bands"]) or "(none)",
            where,
        )
    return replace(settings, **found)


def _choose(names: Sequence[str], preferred: Sequence[str]) -> str | None:
    by_lower: dict[str, str] = {}
    for name in names:
        by_lower.setdefault(str(name).lower(), str(name))
    return next((by_lower[want] for want in preferred if want in by_lower), None)


def ordered_bands(values: Iterable[Any]) -> tuple[str, ...]:
    """The distinct bands among ``values``, bluest first where known (u, g, r, i, z, y; ZTF's 1, 2, 3)."""
    distinct = set()
    for chunk in values:
        distinct.update(str(b) for b in np.atleast_1d(np.asarray(chunk, dtype=object)) if b is not None)
    distinct.discard("")
    known = {band: rank for rank, band in enumerate(BAND_ORDER)}
    return tuple(sorted(distinct, key=lambda band: (known.get(band, len(known)), band)))


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
            centre = np.median(v)
            v = v - centre
            if settings.normalize == "standardize":
                spread = 1.4826 * float(np.median(np.abs(v)))
                spread = spread if spread > 0 else (float(v.std()) or 1.0)
                v, e = v / spread, e / spread
        if settings.method == "sample":
            out[b] = _sampled(t, v, e, settings, row, b)
        elif settings.span is None:
            out[b] = _counted(t, v, e, settings.length)
        else:
            out[b] = _binned(t, v, e, settings, times[keep].max() - start)
    if settings.normalize == "standardize":  # time in units of the window the bins cover
        window = float(settings.span) if isinstance(settings.span, int | float) else times[keep].max() - start
        out[:, 0] /= window if window > 0 else 1.0
    return out


def _weights(e: np.ndarray) -> np.ndarray:
    return 1.0 / np.where(np.isfinite(e) & (e > 0), e, 1.0) ** 2


def _counted(t, v, e, length: int) -> np.ndarray:
    """Bins that fit the data: the observations in time order, ``length`` bins of about equal counts
    (one observation a bin when there are fewer, the rest padding); time: each bin's mean time."""
    order = np.argsort(t, kind="stable")
    t, v, e = t[order], v[order], e[order]
    count = len(t)
    bins = np.arange(count) if count <= length else np.arange(count) * length // count
    weights = _weights(e)
    total = np.bincount(bins, weights, length)
    members = np.bincount(bins, minlength=length)
    filled = members > 0
    out = np.zeros((4, length), dtype=np.float32)
    out[0, filled] = np.bincount(bins, t, length)[filled] / members[filled]
    out[1, filled] = (np.bincount(bins, weights * v, length) / np.where(filled, total, 1))[filled]
    out[2, filled] = (1.0 / np.sqrt(np.where(filled, total, 1)))[filled]
    out[3] = filled
    return out


def _binned(t, v, e, settings: Resampling, full_span: float) -> np.ndarray:
    length = settings.length
    span = max(full_span, 1e-9) if settings.span == "full" else float(settings.span)
    inside = t <= span
    t, v, e = t[inside], v[inside], e[inside]
    bins = np.minimum((t / span * length).astype(np.int64), length - 1)
    weights = _weights(e)
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
