"""How a column colours the map: categories with a legend, or numbers on a linear, log or rank scale.

``visualize.color_scale = "auto"`` (the default) chooses by this rule, from the column's values over
every object (past :data:`SAMPLE` objects, the seeded sample of that many the map draws first):

- **categories**: text, booleans, and whole numbers with at most :data:`MAX_CATEGORIES` distinct
  values. The :data:`MAX_CATEGORIES` most frequent values each get a colour of a categorical palette, in
  sorted order (so the same data always gets the same colours); every other value is ``"other"`` and a
  missing one ``"(missing)"``, both grey.
- **log**: numbers that are skewed (one side of their 1-99 % range is more than :data:`SKEW` times the
  other, measured from the median: outlier scores, fluxes) and all above 0;
- **rank**: other skewed numbers: each object's colour is its quantile among all objects, the colour
  bar's labels the values at those quantiles;
- **linear**: the rest (from the smallest value of every object to the largest).

``"linear"``, ``"log"``, ``"rank"`` or ``"category"`` force a scale. The colour bar's or legend's
title says which scale a map uses.

>>> scale = choose("type", np.array(["FRI", "FRII", "FRI"]))
>>> scale.kind, scale.categories, scale.encode(np.array(["FRII", "FRI"]))
('category', ('FRI', 'FRII'), ['FRII', 'FRI'])
>>> choose("outlier_score", np.random.default_rng(0).lognormal(0, 1.5, 1000)).title
'outlier_score (log scale)'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyrax.errors import ConfigError

#: The scales of ``visualize.color_scale``.
SCALES = ("auto", "linear", "log", "rank", "category")
#: At most this many objects decide the scale (the categories, the quantiles of a rank scale).
SAMPLE = 100_000
#: Categories with a colour of their own; the rest are "other".
MAX_CATEGORIES = 10
#: A column is skewed when one side of its 1-99 % range about the median is this many times the other.
SKEW = 4.0
OTHER = "other"
MISSING = "(missing)"
#: Ten colours told apart by most eyes (Category10 without its grey, which "other" uses, and one more).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
)
GREYS = {OTHER: "#a0a0a0", MISSING: "#dcdcdc"}
#: Quantiles kept for a rank scale (0, 1/256, ..., 1): a colour step finer than the eye sees.
RANKS = 257


@dataclass(frozen=True)
class ColourScale:
    """How ``column`` colours the points: ``kind`` is "category", "linear", "log" or "rank"."""

    column: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    #: Category labels in legend order ("other" and "(missing)" last, when there are any).
    categories: tuple[str, ...] = ()
    #: The column's values at evenly spaced quantiles 0..1 (rank scale).
    quantiles: tuple[float, ...] = ()

    @property
    def title(self) -> str:
        """The colour bar's or legend's title: the column and its scale."""
        return {
            "category": f"{self.column} (categories)",
            "linear": self.column,
            "log": f"{self.column} (log scale)",
            "rank": f"{self.column} (rank: quantile of all objects; labels: values)",
        }[self.kind]

    @property
    def colours(self) -> list[str]:
        """One colour per category (category scale)."""
        named = [c for c in self.categories if c not in GREYS]
        return [PALETTE[i % len(PALETTE)] for i in range(len(named))] + [
            GREYS[c] for c in self.categories if c in GREYS
        ]

    def encode(self, values) -> list[str] | np.ndarray:
        """What the page colours each point by: its category label, or a number (the value itself on
        linear and log scales, NaN where a log scale has none; its quantile on a rank scale)."""
        if self.kind == "category":
            kept = set(self.categories) - set(GREYS)
            labels = _labels(values)
            return [label if label in kept or label == MISSING else OTHER for label in labels]
        numbers = _numbers(values, self.column)
        if self.kind == "log":
            return np.where(numbers > 0, numbers, np.nan)
        if self.kind == "rank":
            ranks = np.interp(numbers, self.quantiles, np.linspace(0.0, 1.0, len(self.quantiles)))
            return np.where(np.isfinite(numbers), ranks, np.nan)
        return numbers


def choose(
    column: str, values, how: str = "auto", value_range: tuple[float, float] | None = None
) -> ColourScale:
    """The scale of ``column`` from its ``values`` (every object's, or a sample's: see the module
    documentation); ``value_range``: its (min, max) over every object, when known."""
    if how not in SCALES:
        raise ConfigError(f'visualize.color_scale must be one of {", ".join(SCALES)}; got "{how}".')
    values = np.asarray(values)
    numeric = values.dtype.kind in "iuf"
    if how == "category" or (how == "auto" and (not numeric or _few_whole_numbers(values))):
        return _categories(column, values)
    if not numeric:
        raise ConfigError(
            f'visualize.color_scale = "{how}" needs numbers, but "{column}" holds text: set '
            f'visualize.color_scale = "category" (or "auto").'
        )
    numbers = values.astype(np.float64)
    finite = numbers[np.isfinite(numbers)]
    if not len(finite):
        return ColourScale(column, "linear")
    low, high = value_range or (float(finite.min()), float(finite.max()))
    if how == "auto":
        how = ("log" if finite.min() > 0 else "rank") if _skewed(finite) else "linear"
    if how == "log":
        positive = finite[finite > 0]
        low = float(positive.min()) if len(positive) else 1.0
        return ColourScale(column, "log", low, max(high, low))
    if how == "rank":
        quantiles = np.quantile(finite, np.linspace(0.0, 1.0, RANKS))
        return ColourScale(column, "rank", 0.0, 1.0, quantiles=tuple(float(q) for q in quantiles))
    return ColourScale(column, "linear", low, high if high > low else low + 1.0)


def _skewed(finite: np.ndarray) -> bool:
    low, middle, high = np.quantile(finite, [0.01, 0.5, 0.99])
    below, above = middle - low, high - middle
    return bool(above > SKEW * below or below > SKEW * above)


def _few_whole_numbers(values: np.ndarray) -> bool:
    """Integers, or floats that are all whole (an integer column with NaN for missing rows), with at
    most MAX_CATEGORIES distinct values."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.dtype.kind == "f" and not np.array_equal(finite, np.round(finite)):
        return False
    return len(np.unique(finite)) <= MAX_CATEGORIES


def _categories(column: str, values: np.ndarray) -> ColourScale:
    labels = np.asarray(_labels(values), dtype=object)
    names, counts = np.unique(labels[labels != MISSING].astype(str), return_counts=True)
    order = np.lexsort((names, -counts))  # most frequent first, ties by name
    kept = names[np.sort(order[:MAX_CATEGORIES])] if len(names) else names
    kept = sorted(kept.tolist(), key=_natural)
    extra = ([OTHER] if len(names) > len(kept) else []) + ([MISSING] if (labels == MISSING).any() else [])
    return ColourScale(column, "category", categories=tuple(kept + extra))


def _natural(label: str):
    """Numbers in numeric order, then text in alphabetical order."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _labels(values) -> list[str]:
    """Each value as a category label: whole numbers without ".0", missing values (None, NaN) as
    MISSING."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (values == np.round(values))
        return [
            MISSING if not np.isfinite(v) else str(int(v)) if w else str(v)
            for v, w in zip(values.tolist(), whole.tolist(), strict=True)
        ]
    if values.dtype.kind in "biu":
        return [str(v) for v in values.tolist()]
    return [
        MISSING
        if v is None or (isinstance(v, float) and v != v)
        else v.decode()
        if isinstance(v, bytes)
        else str(v)
        for v in values.tolist()
    ]


def _numbers(values, column: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise ConfigError(
            f'"{column}" holds text, which a number scale cannot colour: set visualize.color_scale = '
            f'"category" (or "auto").'
        )
    return values.astype(np.float64)
