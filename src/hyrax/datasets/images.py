"""One image path for every image-like dataset: clean, crop or pad, normalise, transform.

FITS cutouts, HSC and Rubin cutouts, alert stamps (archives and streams), image folders (JPEG/PNG) and
Multimodal Universe images all pass each object's image through :class:`ImagePipeline`, built once per
dataset from the same ``[data_set]`` keys, so a setting named in an error works for every dataset:

1. ``sentinel_above`` / ``sentinel_values``: pixels that stand for "no data" (float32's maximum,
   3.4e38, in ZTF stamps; -99...) become missing.
2. Non-finite pixels (``nan_mode``): false stops with an error naming the object; "zero" sets them to
   the background (0 after normalisation); "quantile" to the ``nan_quantile`` of the image's finite
   pixels (before normalisation); "auto": the dataset's documented default.
3. ``crop_to = [height, width]``: larger images are cut about their centre, smaller ones (stamps at a
   CCD edge) padded about it; padded pixels are background, like missing ones.
4. ``normalize``, per image and per band, over its finite pixels: "none"; "standardize" (minus the
   median, over the noise: 1.4826 x the median absolute deviation); "arcsinh" (standardised, then
   arcsinh(x / arcsinh_scale): faint structure kept linear in units of the noise, bright sources
   compressed); "percentile" (``normalize_percentiles`` mapped to 0 and 1, clipped); "zscale" (IRAF's
   zscale limits mapped to 0 and 1, clipped); "auto": the dataset's documented default.
5. ``transform``: a numpy function of every pixel ("tanh", "log1p"...), last.

>>> import numpy as np
>>> pipeline = ImagePipeline.from_config(
...     {"data_set": {"crop_to": [4, 4], "normalize": "standardize", "nan_mode": "zero"}}, "Stamps")
>>> stamp = np.arange(12, dtype=np.float32).reshape(1, 3, 4); stamp[0, 0, 0] = np.nan
>>> pipeline(stamp, "ZTF18abc").shape
(1, 4, 4)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyrax.errors import DataError

logger = logging.getLogger(__name__)

NORMALIZATIONS = ("none", "standardize", "arcsinh", "percentile", "zscale")
NAN_MODES = ("zero", "quantile")
#: What "auto" means for a dataset that does not say: raw values, and missing pixels an error (Hyrax 0.x).
PLAIN = {"normalize": "none", "nan_mode": False}
#: MAD -> standard deviation for Gaussian noise.
_MAD_TO_SIGMA = 1.4826

_said: set[tuple[str, str]] = set()


def say_once(dataset: str, topic: str, message: str, *args: Any) -> None:
    """Log ``message`` the first time this process meets (dataset, topic): a default that changes a
    user's numbers is said at run time, once."""
    if (dataset, topic) not in _said:
        _said.add((dataset, topic))
        logger.info(message, *args)


@dataclass
class ImageStats:
    """What a pipeline met, for ``hyrax prepare``: counted while ``ImagePipeline.stats`` is set."""

    objects: int = 0
    shapes: Counter = field(default_factory=Counter)
    nonfinite_objects: int = 0
    nonfinite_pixels: int = 0
    sentinel_objects: int = 0
    sentinel_pixels: int = 0
    padded: int = 0
    cropped: int = 0
    low: float = np.inf
    high: float = -np.inf
    examples: dict[str, list[str]] = field(default_factory=dict)

    def example(self, what: str, object_id: str) -> None:
        found = self.examples.setdefault(what, [])
        if len(found) < 3:
            found.append(str(object_id))


def _setting(config: Mapping, key: str, default: Any = None) -> Any:
    value = config.get("data_set", {}).get(key, default)
    return None if value is False else value


def numpy_transform(name: str | None):
    """``data_set.transform`` -> a numpy function, or None. An unknown name is an error."""
    if name is None:
        return None
    function = getattr(np, name, None)
    if not isinstance(function, np.ufunc):
        raise DataError(
            f'data_set.transform = "{name}" is not a numpy function of one array; use e.g. "tanh", '
            f'"arcsinh", "log1p" or "sqrt", or false for none.'
        )
    return function


@dataclass
class ImagePipeline:
    """The per-object image path of one dataset (see the module's docstring for each step)."""

    dataset: str
    crop_to: tuple[int, int] | None = None
    nan_mode: str | None = None
    nan_quantile: float = 0.05
    sentinel_above: float | None = 1e30
    sentinel_values: tuple[float, ...] = ()
    normalize: str = "none"
    percentiles: tuple[float, float] = (1.0, 99.0)
    arcsinh_scale: float = 1.0
    transform: Any = None
    #: Set to an :class:`ImageStats` to count what the pipeline meets (``hyrax prepare``).
    stats: ImageStats | None = None

    @classmethod
    def from_config(cls, config: Mapping, dataset: str, defaults: Mapping[str, Any] = PLAIN) -> ImagePipeline:
        """The pipeline ``config``'s ``[data_set]`` keys ask for; "auto" values take ``defaults``
        (the dataset's documented choices)."""
        normalize = _setting(config, "normalize", "auto") or "none"
        automatic = normalize == "auto"
        if automatic:
            normalize = defaults.get("normalize", "none")
        if normalize not in NORMALIZATIONS:
            raise DataError(
                f'data_set.normalize = "{normalize}" is not a normalisation; use one of '
                f'{", ".join(NORMALIZATIONS)} or "auto".'
            )
        nan_mode = _setting(config, "nan_mode", "auto")
        if nan_mode == "auto":
            nan_mode = defaults.get("nan_mode") or None
        crop = _setting(config, "crop_to")
        if crop is not None and (len(crop) != 2 or min(int(v) for v in crop) < 1):
            raise DataError(f"data_set.crop_to must be [height, width] in pixels, got {list(crop)}.")
        if crop is None and defaults.get("crop_to"):
            crop = defaults["crop_to"]
        sentinel_above = _setting(config, "sentinel_above", 1e30)
        low, high = _setting(config, "normalize_percentiles", [1.0, 99.0])
        pipeline = cls(
            dataset=dataset,
            crop_to=tuple(int(v) for v in crop) if crop is not None else None,
            nan_mode=nan_mode,
            nan_quantile=float(config.get("data_set", {}).get("nan_quantile", 0.05)),
            sentinel_above=float(sentinel_above) if sentinel_above is not None else None,
            sentinel_values=tuple(float(v) for v in (_setting(config, "sentinel_values") or ())),
            normalize=normalize,
            percentiles=(float(low), float(high)),
            arcsinh_scale=float(_setting(config, "arcsinh_scale", 1.0) or 1.0),
            transform=numpy_transform(_setting(config, "transform")),
        )
        if automatic and normalize != "none":
            say_once(
                dataset,
                "normalize",
                '%s: images are normalised per band, %s (data_set.normalize = "auto": this dataset\'s '
                'default); set data_set.normalize = "none" for the raw pixel values (Hyrax 0.x).',
                dataset,
                pipeline.describe(),
            )
        return pipeline

    def describe(self) -> str:
        """The normalisation in words."""
        return {
            "none": "not at all",
            "standardize": "minus the median, over the noise (1.4826 x MAD)",
            "arcsinh": f"minus the median, over the noise, then arcsinh(x / {self.arcsinh_scale:g})",
            "percentile": f"percentiles {self.percentiles[0]:g}-{self.percentiles[1]:g} to 0-1",
            "zscale": "zscale limits to 0-1",
        }[self.normalize]

    # -- the steps ------------------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, object_id: str) -> np.ndarray:
        """The object's image (any leading axes, then height and width) through every step."""
        return self.finish(self.clean(image, object_id), object_id)

    def clean(self, image: np.ndarray, object_id: str) -> np.ndarray:
        """Steps 1-3 on one band or a stack: a float32 copy with sentinels and non-finite pixels handled
        per ``nan_mode`` (missing ones left NaN for :meth:`finish`), cut or padded to ``crop_to``."""
        raw = np.asarray(image)
        image = raw.astype(np.float32, copy=True)
        stats = self.stats
        if stats is not None:
            stats.objects += 1
            stats.shapes[tuple(raw.shape)] += 1
        if self.sentinel_above is not None or self.sentinel_values:
            sentinel = self._sentinels(image)
            if sentinel is not None:
                image[sentinel] = np.nan
                if stats is not None:
                    stats.sentinel_objects += 1
                    stats.sentinel_pixels += int(sentinel.sum())
                    stats.example("sentinel", object_id)
        finite_sum = np.isfinite(image.sum()) if image.size else True
        bad = None if finite_sum else ~np.isfinite(image)
        if bad is not None and not bad.any():
            bad = None  # the sum overflowed: every pixel is finite
        if stats is not None and image.size:
            values = image[~bad] if bad is not None else image
            if values.size:
                stats.low, stats.high = (
                    min(stats.low, float(values.min())),
                    max(stats.high, float(values.max())),
                )
        if bad is not None:
            if stats is not None:
                stats.nonfinite_objects += 1
                stats.nonfinite_pixels += int(bad.sum())
                stats.example("nonfinite", object_id)
            if self.nan_mode is None and stats is None:
                raise DataError(
                    f"Object {object_id}: its image has {int(bad.sum())} NaN/inf pixel(s) of {image.size} "
                    f'({self.dataset}). Set data_set.nan_mode = "zero" (background) or "quantile", or '
                    f'data_set.on_bad_object = "skip" to leave such objects out.'
                )
            if self.nan_mode == "quantile" and not bad.all():
                image[bad] = np.quantile(image[~bad], self.nan_quantile)
        return self._resize(image, object_id)

    def finish(self, image: np.ndarray, object_id: str) -> np.ndarray:
        """Steps 4-5 on an image made by :meth:`clean` (bands stacked): normalised per band, missing
        pixels set to the background (0), then the transform."""
        if self.normalize != "none":
            planes = image.reshape(-1, *image.shape[-2:]) if image.ndim >= 2 else image.reshape(1, -1)
            rest = self._standardize_finite(planes) if self.normalize in ("standardize", "arcsinh") else None
            for index in range(len(planes)) if rest is None else np.flatnonzero(rest):
                self._normalize(planes[index])
        missing = ~np.isfinite(image)
        if missing.any():
            image[missing] = 0.0
        return self.transform(image, out=image) if self.transform is not None else image

    def _sentinels(self, image: np.ndarray) -> np.ndarray | None:
        sentinel = None
        if self.sentinel_above is not None:
            with np.errstate(invalid="ignore"):
                peak = np.nanmax(np.abs(image)) if image.size else 0.0
            if peak >= self.sentinel_above:
                with np.errstate(invalid="ignore"):
                    sentinel = np.abs(image) >= self.sentinel_above
        for value in self.sentinel_values:
            hit = image == value
            if hit.any():
                sentinel = hit if sentinel is None else sentinel | hit
        return sentinel

    def _resize(self, image: np.ndarray, object_id: str) -> np.ndarray:
        if self.crop_to is None or image.ndim < 2:
            return image
        height, width = self.crop_to
        have_h, have_w = image.shape[-2:]
        if (have_h, have_w) == (height, width):
            return image
        if have_h > height or have_w > width:
            top, left = max(0, (have_h - height) // 2), max(0, (have_w - width) // 2)
            image = image[..., top : top + min(height, have_h), left : left + min(width, have_w)]
            if self.stats is not None:
                self.stats.cropped += 1
        have_h, have_w = image.shape[-2:]
        if (have_h, have_w) != (height, width):
            padded = np.full((*image.shape[:-2], height, width), np.nan, dtype=np.float32)
            top, left = (height - have_h) // 2, (width - have_w) // 2
            padded[..., top : top + have_h, left : left + have_w] = image
            image = padded
            if self.stats is not None:
                self.stats.padded += 1
                self.stats.example("padded", object_id)
            else:
                say_once(
                    self.dataset,
                    "pad",
                    "%s: %s: image %dx%d, smaller than data_set.crop_to = [%d, %d], padded about its centre "
                    "with background (said once; hyrax prepare counts them all).",
                    self.dataset,
                    object_id,
                    have_h,
                    have_w,
                    height,
                    width,
                )
        return np.ascontiguousarray(image)

    def _standardize_finite(self, planes: np.ndarray) -> np.ndarray | None:
        """ "standardize"/"arcsinh" of the planes whose pixels are all finite, all at once (a median along
        an axis: a stream's batch of 256 alerts, 768 stamps, in one call instead of 1,536, ~3x faster),
        the same numbers as :meth:`_normalize` gives each plane; the mask of planes left to it (those with
        missing pixels or no spread), or None when ``planes`` is not a contiguous stack to do it on."""
        if planes.ndim != 3 or not planes.flags.c_contiguous or planes.dtype != np.float32 or not planes.size:
            return None
        rows = planes.reshape(len(planes), -1)
        with np.errstate(over="ignore"):
            finite = np.isfinite(rows.sum(axis=1))  # a NaN or inf pixel makes its plane's sum not finite
        if not finite.all():
            finite &= np.isfinite(rows).all(axis=1)  # (or the sum overflowed: every pixel may be finite)
        chosen = np.flatnonzero(finite)
        values = rows[chosen] if len(chosen) < len(rows) else rows
        centre = _row_medians(values)
        # float32 in, the spread in float64 as float(...) gives it to _normalize, then float32 as
        # `plane /= spread` (a Python float) rounds it: the same bits either way
        spread = _MAD_TO_SIGMA * _row_medians(np.abs(values - centre[:, None])).astype(np.float64)
        spread_ok = spread > 0
        done = chosen[spread_ok]
        values = values[spread_ok] if not spread_ok.all() else values
        values -= centre[spread_ok, None]
        values /= spread[spread_ok].astype(np.float32)[:, None]
        if self.normalize == "arcsinh":
            np.arcsinh(values / np.float32(self.arcsinh_scale), out=values)
        if len(done) < len(rows):
            rows[done] = values  # a fancy-indexed selection is a copy: put it back
        rest = np.ones(len(rows), dtype=bool)
        rest[done] = False
        return rest

    def _normalize(self, plane: np.ndarray) -> None:
        """Normalise one band in place over its finite pixels."""
        finite = np.isfinite(plane)
        values = plane[finite] if not finite.all() else plane.ravel()
        if values.size == 0:
            return
        if self.normalize in ("standardize", "arcsinh"):
            centre = float(np.median(values))
            spread = _MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))
            if not spread > 0:
                spread = float(values.std()) or 1.0
            plane -= centre
            plane /= spread
            if self.normalize == "arcsinh":
                np.arcsinh(plane / self.arcsinh_scale, out=plane)
            return
        if self.normalize == "percentile":
            low, high = np.percentile(values, self.percentiles)
        else:  # zscale
            from astropy.visualization import ZScaleInterval

            low, high = ZScaleInterval().get_limits(values)
        span = float(high - low) or 1.0
        plane -= low
        plane /= span
        np.clip(plane, 0.0, 1.0, out=plane)


def _row_medians(rows: np.ndarray) -> np.ndarray:
    """``np.median(rows, axis=1)`` of finite float32 rows, twice as fast: each float's bits as an int32 key
    that orders as the floats do (negative ones flipped), partitioned as integers (a float partition pays
    for NaN-aware comparisons), the middle one or two turned back, averaged in float32 as np.median does."""
    bits = rows.view(np.int32)
    keys = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits)
    count = rows.shape[1]
    kth = [count // 2] if count % 2 else [count // 2 - 1, count // 2]
    middle = np.partition(keys, kth, axis=1)[:, kth]
    middle = np.where(middle < 0, middle ^ np.int32(0x7FFFFFFF), middle).view(np.float32)
    return middle[:, 0] if count % 2 else (middle[:, 0] + middle[:, 1]) / np.float32(2)


_SIGNATURES = (
    (b"SIMPLE  =", "a FITS file"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x1f\x8b", "a gzip file"),
    (b"PK\x03\x04", "a zip file"),
    (b"PAR1", "a Parquet file"),
    (b"\x93NUMPY", "a numpy .npy file"),
)


def file_kind(path: Any) -> str | None:
    """What a file is by its first bytes ("a JPEG image", "a FITS file"...), an HTML page (a failed
    download's error page), or None when unknown or unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return None
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page (an error page saved in place of the file?)"
    return None
