"""The cells of one atlas level and how they become the next coarser level's, and an object's picture as
a cell's thumbnail (:mod:`hyrax.visualize.atlas_build` builds with them)."""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass
class Cells:
    """The non-empty cells of one level (global cell coordinates ``gx``, ``gy``), each with its count,
    the sums of its members' x and y, and its representative (map row, x, y, value, id, thumbnail)."""

    gx: np.ndarray
    gy: np.ndarray
    count: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    rep: np.ndarray
    rx: np.ndarray
    ry: np.ndarray
    value: np.ndarray
    ids: np.ndarray
    thumbs: np.ndarray

    def take(self, index: np.ndarray) -> Cells:
        return Cells(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def concat(parts: list[Cells]) -> Cells:
        return Cells(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Cells)))

    def save(self, path: Path) -> None:
        from hyrax.results.run_dir import write_bytes_atomic

        buffer = io.BytesIO()
        np.savez(buffer, **{f.name: getattr(self, f.name) for f in fields(self)})
        write_bytes_atomic(path, buffer.getvalue())  # synced: it marks its tiles done

    @staticmethod
    def load(path: Path) -> Cells:
        with np.load(path) as saved:
            return Cells(*(saved[f.name] for f in fields(Cells)))


def best_per_group(group: np.ndarray, score: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """The index of the lowest ``score`` in each group (ties: the lowest ``tie``), by ascending group."""
    order = np.lexsort((tie, score, group))
    ordered = group[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return order[first]


def merge(cells: Cells, typical: bool, sign: float) -> Cells:
    """The next coarser level: four cells become one, its representative one of theirs (the nearest to
    the count-weighted centroid of all their members, or the best value)."""
    key = ((cells.gy >> 1) << 32) | (cells.gx >> 1)
    unique, inverse = np.unique(key, return_inverse=True)
    count = np.bincount(inverse, weights=cells.count).astype(np.int64)
    sx = np.bincount(inverse, weights=cells.sx)
    sy = np.bincount(inverse, weights=cells.sy)
    if typical:
        score = (cells.rx - (sx / count)[inverse]) ** 2 + (cells.ry - (sy / count)[inverse]) ** 2
    else:
        score = value_score(cells.value, sign)
    parent = cells.take(best_per_group(inverse, score, cells.rep))
    parent.gx, parent.gy = unique & 0xFFFFFFFF, unique >> 32
    parent.count, parent.sx, parent.sy = count, sx, sy
    return parent


def value_score(value: np.ndarray, sign: float) -> np.ndarray:
    score = sign * value.astype(np.float64)
    return np.where(np.isnan(score), np.inf, score)  # an object without a value is chosen last


def cell_picture(picture: np.ndarray, side: int) -> np.ndarray:
    """An RGB(A) picture as a side x side RGBA thumbnail: pixels repeated when it is a whole fraction of the
    side (kept sharp), averaged in blocks when a whole multiple, else resized by Pillow."""
    rgb = np.asarray(picture)[..., :3]
    height, width = rgb.shape[:2]
    out = np.empty((side, side, 4), dtype=np.uint8)
    out[..., 3] = 255
    if height == width and side % height == 0:
        out[..., :3] = rgb.repeat(side // height, axis=0).repeat(side // height, axis=1)
    elif height == width and height % side == 0:
        k = height // side
        out[..., :3] = np.round(rgb.reshape(side, k, side, k, 3).mean(axis=(1, 3)))
    else:
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(rgb))
        small = max(image.size) <= side
        image = image.resize((side, side), Image.Resampling.NEAREST if small else Image.Resampling.BOX)
        out[..., :3] = np.asarray(image)
    return out
