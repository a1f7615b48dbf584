"""Reading one image from a FITS file: fitsio in the hot loop (about 10x astropy), astropy as fallback.

The image is the first HDU that holds image data (HSC cutouts keep it in HDU 1, after an empty
primary HDU). The HDU found is remembered per caller, so later files cost one read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hyrax.datasets.images import file_kind
from hyrax.errors import DataError

try:
    import fitsio
except ImportError:  # pragma: no cover - fitsio is a dependency; astropy still works without it
    fitsio = None


def _image_hdu_fitsio(path: str) -> int:
    with fitsio.FITS(path) as handle:
        for number, hdu in enumerate(handle):
            if hdu.get_exttype() == "IMAGE_HDU" and hdu.get_dims():
                return number
    raise DataError(f"FITS file '{path}' has no HDU with image data.")


def read_image(path: str | Path, object_id: str, hdu_hint: list[int | None]) -> np.ndarray:
    """The 2-D image in ``path`` (any numeric dtype, possibly big-endian). ``hdu_hint`` is a one-item list: the HDU that held the image
    in the previous file (updated in place). Errors name the object and the file and say what to do."""
    path = str(path)
    try:
        if fitsio is not None:
            hdu = hdu_hint[0]
            data = fitsio.read(path, ext=hdu) if hdu is not None else None
            if data is None:
                hdu_hint[0] = _image_hdu_fitsio(path)
                data = fitsio.read(path, ext=hdu_hint[0])
        else:
            data = _read_astropy(path)
    except FileNotFoundError:
        raise DataError(
            f"Object {object_id}: file '{path}' does not exist. Download it again, or remove the object from "
            f"the catalog."
        ) from None
    except DataError:
        raise
    except PermissionError:
        raise DataError(
            f"Object {object_id}: no permission to read '{path}'. Fix the file's permissions (or the "
            f"folder's); the file itself may be fine."
        ) from None
    except Exception as error:  # cfitsio reports corrupt files as OSError with its own text
        if Path(path).exists() and not os.access(path, os.R_OK):  # cfitsio's text does not say so
            raise DataError(
                f"Object {object_id}: no permission to read '{path}'. Fix the file's permissions (or the "
                f"folder's); the file itself may be fine."
            ) from None
        if not Path(path).exists():
            raise DataError(
                f"Object {object_id}: file '{path}' does not exist. Download it again, or remove the object "
                f"from the catalog."
            ) from None
        kind = file_kind(path)
        if kind not in (None, "a FITS file", "a gzip file"):
            readers = {"a JPEG image", "a PNG image", "a GIF image", "a TIFF image"}
            advice = (
                'read JPEG/PNG cutouts with dataset_class = "ImageFolderDataset"'
                if kind in readers
                else "convert it to FITS, or leave the object out of the catalog"
            )
            raise DataError(
                f"Object {object_id}: '{path}' is {kind}, not a FITS file: {advice} (or set "
                f'data_set.on_bad_object = "skip").'
            ) from None
        raise DataError(
            f"Object {object_id}: cannot read FITS file '{path}' ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no details'}). The file is "
            f'corrupt or truncated: download it again, or set data_set.on_bad_object = "skip".'
        ) from None
    if data.ndim != 2:
        data = np.squeeze(data)
        if data.ndim != 2:
            raise DataError(f"Object {object_id}: '{path}' holds a {data.ndim}-D image; expected 2-D.")
    return data  # the caller copies it into its float32 output


def _read_astropy(path: str) -> np.ndarray:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        for hdu in hdus:
            if hdu.is_image and hdu.data is not None and hdu.data.size:
                return np.asarray(hdu.data)
    raise DataError(f"FITS file '{path}' has no HDU with image data.")


def image_shape(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of the image in ``path`` from its header alone, or None when unreadable."""
    try:
        if fitsio is not None:
            with fitsio.FITS(str(path)) as handle:
                for hdu in handle:
                    if hdu.get_exttype() == "IMAGE_HDU" and hdu.get_dims():
                        dims = hdu.get_dims()
                        return (int(dims[-2]), int(dims[-1])) if len(dims) >= 2 else None
            return None
        return tuple(_read_astropy(str(path)).shape[-2:])
    except PermissionError:  # not an unreadable file: a setting the user must fix
        raise DataError(
            f"No permission to read '{path}'. Fix the file's (or folder's) permissions."
        ) from None
    except Exception:  # unreadable files are reported by the caller as dropped
        return None
