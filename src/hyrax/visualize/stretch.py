"""Astronomy image stretches for thumbnails: asinh, log, zscale, and Lupton RGB for three bands."""

from __future__ import annotations

import base64
import io

import numpy as np


def _unit(image: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((image - low) / (high - low if high > low else 1.0), 0, 1)


def zscale(image: np.ndarray) -> np.ndarray:
    from astropy.visualization import ZScaleInterval

    low, high = ZScaleInterval().get_limits(image[np.isfinite(image)])
    return _unit(image, low, high)


def stretch(image: np.ndarray, how: str = "asinh") -> np.ndarray:
    """A 2-D band scaled to [0, 1] by ``how`` ("asinh", "log", "zscale" or "linear")."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if how == "zscale":
        return zscale(image)
    low, high = np.percentile(image, [1, 99.5])
    scaled = _unit(image, low, high)
    if how == "asinh":
        return np.arcsinh(10 * scaled) / np.arcsinh(10)
    if how == "log":
        return np.log1p(100 * scaled) / np.log1p(100)
    return scaled


def to_rgb(image: np.ndarray, how: str = "asinh", band: int | None = None) -> np.ndarray:
    """(bands, height, width) or (height, width[, 3]) -> (height, width, 3) uint8. Three bands use
    Lupton's RGB (asinh on the summed intensity keeps colours); one band, or ``band``, is grey."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and image.dtype == np.uint8:
        return image[..., :3]
    if image.ndim == 2:
        image = image[None]
    if band is not None or image.shape[0] != 3:
        grey = stretch(image[band or 0], how)
        return (np.repeat(grey[..., None], 3, axis=2) * 255).astype(np.uint8)
    from astropy.visualization import make_lupton_rgb

    bands = np.nan_to_num(image.astype(np.float64))
    scale = np.percentile(bands, 99.5) or 1.0
    return make_lupton_rgb(bands[2] / scale, bands[1] / scale, bands[0] / scale, stretch=0.5, Q=8)


def png_bytes(picture: np.ndarray, size: int | None = None) -> bytes:
    """An RGB or RGBA uint8 image as PNG bytes, resized to size x size when ``size`` is given."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(picture))
    if size is not None:
        image = image.resize(
            (size, size), Image.Resampling.NEAREST if picture.shape[0] < size else Image.Resampling.BILINEAR
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(rgb: np.ndarray, size: int = 64) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb, size)).decode()


PLACEHOLDER = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="#444"/>'
        b'<text x="32" y="36" font-size="10" fill="#ccc" text-anchor="middle">no image</text></svg>'
    ).decode()
)


def placeholder_png(size: int = 64) -> bytes:
    """The "no image" tile as PNG bytes (the live map serves thumbnails as PNG)."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (size, size), (68, 68, 68))
    ImageDraw.Draw(picture).text((size // 2, size // 2), "no image", fill=(204, 204, 204), anchor="mm")
    return png_bytes(np.asarray(picture))
