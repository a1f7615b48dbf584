"""``HSCDataset``: a directory of HSC cutouts as the downloader names them.

Files are ``<object_id>_<type>_<ra>_<dec>_<tract>_<filter>.fits`` (for example
``36411452835238206_coadd_30.59134_-6.28237_8279_HSC-I.fits``). With a ``manifest.parquet`` (written by
``hyrax download``) the files and their shapes come from it; without one the directory is scanned and
each file's header read once.

Objects missing a band (of ``data_set.filters``, else every filter found) or smaller than the cutout
size (``data_set.crop_to``, else the most common size) are dropped, with a summary of how many and why
in the log and in ``dataset.dropped``. Larger cutouts are centre-cropped to that size.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.datasets.fits import FitsImageDataset, band_order
from hyrax.datasets.fits_reader import image_shape
from hyrax.errors import DataError

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.parquet"


def parse_cutout_name(name: str) -> tuple[str, str] | None:
    """``"<id>_coadd_<ra>_<dec>_<tract>_<filter>.fits"`` -> (id, filter); None for other names."""
    if not name.endswith(".fits"):
        return None
    parts = name[:-5].split("_")
    if len(parts) < 3:
        return None
    return parts[0], parts[-1]


class HSCDataset(FitsImageDataset):
    """HSC cutouts in ``data_location``; fields ``image`` (bands x height x width) and ``object_id``."""

    def __init__(self, config: Mapping, data_location: str | Path | None = None):

        location = data_location if data_location is not None else config["general"]["data_dir"]
        self.data_location = Path(location).expanduser()
        if not self.data_location.is_dir():
            raise DataError(
                f"{type(self).__name__}: data_location '{self.data_location}' is not a directory of cutouts."
            )
        rows = self._files()
        if rows.empty:
            raise DataError(self._no_cutouts())
        wide = rows.pivot_table(index="object_id", columns="filter", values="filename", aggfunc="first")
        wide = wide.loc[rows["object_id"].drop_duplicates(), band_order([str(f) for f in wide.columns])]
        filters = [str(f) for f in wide.columns]
        metadata = _positions(wide, rows)
        self._setup(config, wide.index.to_numpy(), wide.to_numpy(dtype=object), filters, metadata)
        self._drop_small(config, rows)
        self._freeze()
        super(FitsImageDataset, self).__init__(config, self.data_location, self._metadata_frame)

    def _no_cutouts(self) -> str:
        return (
            f"HSCDataset: no cutouts named <object_id>_..._<filter>.fits in {self.data_location}. "
            f"Download some with `hyrax download`, or point data_location at them."
        )

    def _files(self):
        import pandas as pd

        manifest = self.data_location / MANIFEST_NAME
        if manifest.is_file():
            table = pd.read_parquet(manifest)
            if "status" in table.columns:
                table = table[table["status"] == "done"]
            table = table.rename(columns={"file": "filename"})
            keep = [
                c
                for c in ("object_id", "filter", "filename", "height", "width", "ra", "dec", "tract")
                if c in table.columns
            ]
            table = table[keep].copy()
            table["object_id"] = table["object_id"].astype(str)
            return table
        names = []
        with os.scandir(self.data_location) as entries:
            for entry in entries:
                parsed = parse_cutout_name(entry.name)
                if parsed and entry.is_file():
                    names.append((parsed[0], parsed[1], entry.name))
        names.sort()
        return pd.DataFrame(names, columns=["object_id", "filter", "filename"])

    def _drop_small(self, config: Mapping, rows) -> None:
        """Drop objects with a band smaller than the cutout size; crop the rest to it."""
        if "height" in rows.columns and "width" in rows.columns:
            shape_of = {
                name: (int(h), int(w))
                for name, h, w in rows[["filename", "height", "width"]].itertuples(index=False)
            }
        else:
            shape_of = {}
        shapes = np.array(
            [
                [shape_of.get(name) or image_shape(self.data_location / name) or (0, 0) for name in row]
                for row in self._file_table
            ],
            dtype=np.int64,
        ).reshape(len(self._file_table), len(self.filters), 2)
        unreadable = (shapes == 0).all(axis=2).any(axis=1)
        if self.image_pipeline.crop_to is None:
            readable = shapes[~unreadable].reshape(-1, 2)
            if len(readable) == 0:
                raise DataError(
                    f"{type(self).__name__}: none of the cutouts in {self.data_location} could be read."
                )
            self.image_pipeline.crop_to = Counter(map(tuple, readable)).most_common(1)[0][0]
        height, width = self.image_pipeline.crop_to
        small = ~unreadable & ((shapes[..., 0] < height) | (shapes[..., 1] < width)).any(axis=1)
        keep = ~(unreadable | small)
        self.dropped.update(
            {"unreadable file": int(unreadable.sum()), f"smaller than {height}x{width}": int(small.sum())}
        )
        if not keep.all():
            logger.warning(
                "%s: dropped %d of %d objects: %s",
                type(self).__name__,
                int((~keep).sum()),
                len(keep),
                ", ".join(f"{count} {why}" for why, count in self.dropped.items() if count),
            )
        self.object_ids, self._file_table = self.object_ids[keep], self._file_table[keep]
        self._metadata_frame = self._metadata_frame[keep].reset_index(drop=True)


def _positions(wide, rows=None):
    """Metadata of each object: its id, and ``ra``, ``dec``, ``tract`` from the manifest, else read from its
    first cutout's name (``<id>_<type>_<ra>_<dec>_<tract>_<filter>.fits``) when the names carry them."""
    import pandas as pd

    frame = pd.DataFrame({"object_id": wide.index.to_numpy()})
    if rows is not None and {"ra", "dec"} <= set(rows.columns):
        first = rows.drop_duplicates("object_id").set_index("object_id")
        columns = [c for c in ("ra", "dec", "tract") if c in first.columns and first[c].notna().any()]
        found = first.reindex(frame["object_id"])[columns].reset_index(drop=True)
        return pd.concat([frame, found], axis=1)
    first = wide.bfill(axis=1).iloc[:, 0].astype(str).to_numpy()
    parts = [name[:-5].split("_") if name.endswith(".fits") else [] for name in first]
    try:
        frame["ra"] = np.array([float(p[-4]) for p in parts])
        frame["dec"] = np.array([float(p[-3]) for p in parts])
        frame["tract"] = np.array([int(p[-2]) for p in parts])
    except (IndexError, ValueError):  # names without positions: the id alone
        return frame[["object_id"]]
    return frame
