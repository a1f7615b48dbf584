"""``ImageFolderDataset``: JPEG/PNG cutouts in a folder, with or without a catalog.

As Galaxy Zoo, the Legacy Surveys viewer and most cutout services give them. With a catalog
(``data_set.filter_catalog``, else ``catalog.{parquet,fits,csv}`` in ``data_location``) each row names an
object (``data_set.object_id_column_name``, default ``object_id``) and its file
(``data_set.filename_column_name``, default ``filename``, relative to ``data_location``), and every other
column is a field; without one, every ``.jpg``/``.jpeg``/``.png``/``.gif``/``.tif``/``.webp`` file under
``data_location`` is an object whose id is its path without the suffix.

``image``: float32 (bands, height, width) in 0-1 (8-bit pixels / 255, 16-bit / 65535): 3 bands for colour
images, 1 for grey ones (alpha dropped); ``[data_set.ImageFolderDataset] resize_to = [height, width]``
resamples each image as it is read (JPEGs are decoded at a reduced scale first, which is fast), then the
one image path applies (:mod:`hyrax.datasets.images`: crop or pad, ``normalize``, by default "none" on
these 0-1 pixels, ``transform``).

    [data_request.train.galaxies]
    dataset_class = "ImageFolderDataset"
    data_location = "./gz_decals"
    dataset_config = { object_id_column_name = "iauname", ImageFolderDataset = { resize_to = [64, 64] } }
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.catalog import find_catalog, read_table, require_columns
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.ids import StringColumn
from hyrax.datasets.images import ImagePipeline, file_kind
from hyrax.errors import DataError

SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp")


class ImageFolderDataset(HyraxDataset):
    """JPEG/PNG cutouts; fields ``image``, ``object_id`` and the catalog's columns."""

    #: What ``"auto"`` means for this dataset's images: the 0-1 pixels as they are.
    image_defaults = {"normalize": "none", "nan_mode": "zero"}

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        if data_location is None:
            raise DataError(
                "ImageFolderDataset needs a data_location: the folder of JPEG/PNG files (and its catalog)."
            )
        self.data_location = Path(data_location).expanduser()
        if not self.data_location.is_dir():
            raise DataError(f"ImageFolderDataset: data_location '{self.data_location}' is not a folder.")
        catalog = get_setting(config, "data_set.filter_catalog")
        catalog = Path(catalog).expanduser() if catalog else find_catalog(self.data_location)
        if catalog is not None:
            ids, files, metadata = self._from_catalog(config, catalog)
        else:
            ids, files, metadata = self._from_folder()
        self.object_ids = StringColumn(np.asarray(ids, dtype=str))
        self._files = StringColumn(np.asarray(files, dtype=str))
        size = get_setting(config, "data_set.ImageFolderDataset.resize_to")
        self.resize_to = (int(size[0]), int(size[1])) if size else None
        self.image_pipeline = ImagePipeline.from_config(config, type(self).__name__, self.image_defaults)
        super().__init__(config, self.data_location, metadata)

    def _from_catalog(self, config: Mapping, path: Path):
        table = read_table(path)
        id_column = get_setting(config, "data_set.object_id_column_name") or "object_id"
        file_column = get_setting(config, "data_set.filename_column_name") or "filename"
        require_columns(
            table,
            [(id_column, "data_set.object_id_column_name"), (file_column, "data_set.filename_column_name")],
            str(path),
        )
        ids = table[id_column].astype(str)
        repeated = ids[ids.duplicated()].unique()[:5]
        if len(repeated):
            raise DataError(
                f"Catalog {path} lists object id(s) {', '.join(repeated)} more than once; keep one row each."
            )
        metadata = table.drop(columns=[file_column]).rename(columns={id_column: "object_id"})
        metadata["object_id"] = ids.to_numpy()
        return ids.to_numpy(), table[file_column].astype(str).to_numpy(), metadata.reset_index(drop=True)

    def _from_folder(self):
        import pandas as pd

        files = sorted(
            str(path.relative_to(self.data_location))
            for path in self.data_location.rglob("*")
            if path.suffix.lower() in SUFFIXES and path.is_file()
        )
        if not files:
            raise DataError(
                f"ImageFolderDataset: no catalog and no {'/'.join(s[1:] for s in SUFFIXES)} files in "
                f"{self.data_location}. Point data_location at the images, or give a catalog with "
                f"data_set.filter_catalog (columns object_id and filename)."
            )
        ids = [os.path.splitext(name)[0] for name in files]
        return ids, files, pd.DataFrame({"object_id": ids})

    def __len__(self) -> int:
        return len(self.object_ids)

    def get_object_id(self, idx: int) -> str:
        return self.object_ids[idx]

    def get_image(self, idx: int) -> np.ndarray:
        """The object's image as float32 (bands, height, width), through the image path."""
        object_id = self.object_ids[idx]
        pixels = self._read(self.data_location / self._files[idx], object_id)
        return self.image_pipeline(pixels, object_id)

    def _read(self, path: Path, object_id: str) -> np.ndarray:
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:
            raise DataError("ImageFolderDataset reads images with Pillow: pip install pillow") from None
        try:
            with Image.open(path) as image:
                if self.resize_to is not None:
                    image.draft("RGB", (self.resize_to[1], self.resize_to[0]))  # JPEG: decode smaller
                pixels = _pixels(image, self.resize_to)
        except FileNotFoundError:
            raise DataError(
                f"Object {object_id}: file '{path}' does not exist. Fix the catalog's filename column, or "
                f"remove the object."
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            kind = file_kind(path)
            advice = (
                'read FITS cutouts with dataset_class = "FitsImageDataset"'
                if kind == "a FITS file"
                else "re-save or download it again"
            )
            what = (
                f"is {kind}, not an image Pillow can read"
                if kind
                else f"cannot be read as an image ({error})"
            )
            raise DataError(
                f"Object {object_id}: '{path}' {what}: {advice}, or set data_set.on_bad_object = \"skip\"."
            ) from None
        return pixels


def _pixels(image, size: tuple[int, int] | None) -> np.ndarray:
    """A Pillow image as float32 (bands, height, width) in 0-1."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale, image = 65535.0, image.convert("I")
    elif image.mode in ("L", "1"):
        scale, image = 255.0, image.convert("L")
    elif image.mode == "F":
        scale = 1.0
    else:
        scale, image = 255.0, image.convert("RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return pixels / scale if scale != 1.0 else pixels
