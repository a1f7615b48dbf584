"""The atlas: a reduce_dimensions map tiled with the objects' own images, as a zoomable tile pyramid.

Format ``hyrax-atlas/1`` (fixed; a change is announced in a commit starting "atlas format:").

The square. The map's bounding box (every object's x and y, padded 2% per side) widened about its
centre to a square ``[x0, x1] x [y0, y1]`` (``extent`` in the manifest), so that cells are square in
map units as the thumbnails are in pixels.

Levels. Level ``z`` (0 .. ``max_level``) splits the square into ``2**z x 2**z`` tiles; each tile is a
grid of ``cells x cells`` cells; each cell that holds objects shows one representative object as a
``cell_px`` x ``cell_px`` thumbnail, so a tile image is ``tile_px = cells * cell_px`` pixels square.
Tile ``(tx, ty)``: ``tx`` counts from the left (``x0``), ``ty`` from the TOP (``y1``), as in XYZ web
maps and image rows; a tile's box is::

    size = (x1 - x0) / 2**z
    tile_x0 = x0 + tx * size;   tile_x1 = tile_x0 + size
    tile_y1 = y1 - ty * size;   tile_y0 = tile_y1 - size

Cell ``(col, row)`` of a tile (``col`` from the left, ``row`` from the top, as the pixels) spans pixels
``[col * cell_px, (col + 1) * cell_px) x [row * cell_px, (row + 1) * cell_px)`` of the tile image and the
map box ``x in [tile_x0 + col * size / cells, + size / cells)``, ``y in (tile_y1 - (row + 1) * size /
cells, tile_y1 - row * size / cells]``. An object on a shared edge belongs to the cell to its right and
below it (an object on the square's right edge x = x1 or bottom edge y = y0 to the last cell):
``gx = min(floor((x - x0) / c), n - 1)``, ``gy = min(floor((y1 - y) / c), n - 1)`` with ``c`` the cell size and
``n = 2**z * cells`` the level's cells per side. Empty cells are transparent; tiles with no
objects are not written (404 live, absent static). Cell ``(col, row)`` of tile ``(tx, ty)`` at level
``z`` is the union of the four cells ``(2 col + i, 2 row + j)``, i, j in {0, 1}, of the tiles at level
``z + 1`` that cover it (global cell ``(tx * cells + col, ty * cells + row)`` at level ``z`` is global
cells ``(2 gx + i, 2 gy + j)`` at ``z + 1``).

Representatives. ``choose = "typical"`` (default): the member nearest the centroid of the cell's
members (at coarser levels: the finer representative nearest the centroid of all the members, the
count-weighted mean of the finer cells' centroids). ``choose = "<column>"`` (with ``order`` "max" or
"min"): the member with the largest (smallest) value of that column, e.g. ``outlier_score``. A cell's
representative at level z is always one of its finer cells' representatives at level z + 1.

On disk, in the reduce_dimensions run directory (paths relative to ``<run>/atlas/``; the live server
and a static export serve this folder unchanged)::

    manifest.json            what was built: see below; "complete": true once every tile is written
    {z}/tiles.json           the tiles of level z that exist: {"z": z, "tiles": [[tx, ty], ...]}
    {z}/{tx}/{ty}.webp       the tile image (RGBA; ".png" when image_format is "png")
    {z}/{tx}/{ty}.json       its cells, column-wise, one entry per non-empty cell:
        {"z": z, "tx": tx, "ty": ty, "box": [tile_x0, tile_y0, tile_x1, tile_y1],
         "col": [...], "row": [...],            the cell in the tile (ints)
         "object_id": [...],                    the representative's object id (str)
         "x": [...], "y": [...],                the representative's map coordinates (floats)
         "count": [...],                        how many objects the cell holds (ints)
         "value": [...]}                        with choose = a column only: the representative's value
    .work/                   the build's scratch (buckets by tile, progress markers); removed when complete

``manifest.json``::

    {"format": "hyrax-atlas/1", "complete": true, "objects": N, "extent": [x0, y0, x1, y1],
     "max_level": L, "cells": 16, "cell_px": 32, "tile_px": 512, "image_format": "webp",
     "choose": "typical", "order": "max", "stretch": "asinh", "band": null,
     "levels": [{"z": 0, "tiles": 1, "filled": 211}, ...],   (filled: non-empty cells)
     "made_from": {"reduce_run": "...", "results_rows": N, "results_version": V},
     "build": "9f2c4e1a...", "placed": N}

``build`` names this build (kept when a stopped build is finished, new when the atlas is made again):
the live server sends tiles with ``Cache-Control: private, max-age=3600``, so a page adds
``&build=<build>`` to tile addresses to never show a cached tile of an earlier atlas. ``placed``: the
objects with finite coordinates (the others are left out, with a warning).

Every file is written to a temporary name and renamed into place, so a file that exists is whole; a
rebuild of a killed build skips the finished work and the manifest says ``"complete": false`` until the
end. A change of the map or of any setting above starts the atlas over.

Live server URLs (the ``hyrax visualize`` server, behind its Host and session-token checks like every
route; the token as ``?token=...``, the cookie or the ``X-Hyrax-Token`` header)::

    GET /atlas/manifest.json?token=T
    GET /atlas/{z}/tiles.json?token=T
    GET /atlas/{z}/{tx}/{ty}.webp?token=T     (or .png: the manifest's image_format)
    GET /atlas/{z}/{tx}/{ty}.json?token=T

i.e. ``/atlas/`` + the path in the folder (other query parameters, such as ``build``, are ignored).
A missing tile is a 404; a map without a complete atlas answers 404 for the manifest, with a JSON
``{"error": ...}`` that says to run ``hyrax atlas``. The manifest is sent ``no-store``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from hyrax.errors import ConfigError

#: The format this module writes and reads (the manifest's "format").
FORMAT = "hyrax-atlas/1"
#: The atlas folder in a reduce_dimensions run.
ATLAS_DIR = "atlas"
MANIFEST = "manifest.json"

#: Representatives chosen by the member nearest the centroid of the cell's members.
TYPICAL = "typical"
#: Image formats of tiles, by extension.
IMAGE_TYPES = {"webp": "image/webp", "png": "image/png"}
#: The deepest level "auto" picks: the one whose cells hold about this many objects on average over the
#: square (clusters more, voids none); zooming in past it, the map shows the objects themselves.
OBJECTS_PER_CELL = 16
#: The deepest level "auto" may pick (4^10 tiles at level 10: far past any map's need).
MAX_AUTO_LEVEL = 10
#: The paths in an atlas folder that are part of the format (the live server serves only these).
SERVED = re.compile(r"(manifest\.json|\d{1,2}/tiles\.json|\d{1,2}/\d{1,7}/\d{1,7}\.(webp|png|json))")


@dataclass(frozen=True)
class AtlasSettings:
    """How an atlas is built ([atlas] in the config, with visualize.stretch and visualize.band).

    >>> AtlasSettings(cells=8).tile_px
    256
    """

    cells: int = 16
    cell_px: int = 32
    max_level: int | None = None  # None: "auto" (:func:`auto_level`)
    choose: str = TYPICAL
    order: str = "max"
    image_format: str = "webp"
    stretch: str = "asinh"
    band: int | None = None

    @property
    def tile_px(self) -> int:
        return self.cells * self.cell_px

    @classmethod
    def from_config(cls, config: Mapping) -> AtlasSettings:
        from hyrax.config import get_setting

        section = config.get("atlas") or {}
        level = section.get("max_level", "auto")
        band = get_setting(config, "visualize.band")
        settings = cls(
            cells=int(section.get("cells", 16)),
            cell_px=int(section.get("cell_px", 32)),
            max_level=None if level in ("auto", False, None) else int(level),
            choose=str(section.get("choose", TYPICAL)),
            order=str(section.get("order", "max")),
            image_format=str(section.get("image_format", "webp")),
            stretch=str(get_setting(config, "visualize.stretch") or "asinh"),
            band=None if band is False or band is None else int(band),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise a ConfigError naming the key when a setting is out of its range."""
        for key, value, low, high in (
            ("cells", self.cells, 1, 64),
            ("cell_px", self.cell_px, 4, 256),
            ("max_level", 0 if self.max_level is None else self.max_level, 0, 14),
        ):
            if not low <= value <= high:
                raise ConfigError(f"atlas.{key} = {value} is outside {low}..{high}.")
        if self.order not in ("max", "min"):
            raise ConfigError(f'atlas.order = "{self.order}": give "max" or "min".')
        if self.image_format not in IMAGE_TYPES:
            raise ConfigError(f'atlas.image_format = "{self.image_format}": give "webp" or "png".')

    def recorded(self) -> dict:
        """The settings as the manifest records them (a rebuild with others starts over)."""
        return {**asdict(self), "tile_px": self.tile_px}


def auto_level(objects: int, cells: int) -> int:
    """The deepest level for ``objects`` objects: the first whose cells hold at most
    :data:`OBJECTS_PER_CELL` objects on average over the square, at least 2 (so that even a small map
    zooms), at most :data:`MAX_AUTO_LEVEL`.

    >>> auto_level(1_000, 16), auto_level(1_000_000, 16), auto_level(10_000_000, 16)
    (2, 4, 6)
    """
    level = 0
    while level < MAX_AUTO_LEVEL and (2**level * cells) ** 2 * OBJECTS_PER_CELL < objects:
        level += 1
    return max(level, 2)


def atlas_dir(reduce_run: str | Path) -> Path:
    return Path(reduce_run) / ATLAS_DIR


def tile_box(extent, z: int, tx: int, ty: int) -> list[float]:
    """[tile_x0, tile_y0, tile_x1, tile_y1] of tile (tx, ty) at level z (ty from the top)."""
    x0, _, x1, y1 = extent
    size = (x1 - x0) / 2**z
    top = y1 - ty * size
    return [x0 + tx * size, top - size, x0 + (tx + 1) * size, top]


class Atlas:
    """A built atlas (a reduce_dimensions run's ``atlas/`` folder): its manifest, tiles and cells.

    >>> atlas = Atlas(run / "atlas")                                        # doctest: +SKIP
    >>> atlas.tiles(1), atlas.cells(1, 0, 0)["object_id"][:3]               # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if self.manifest is None:
            raise FileNotFoundError(
                f"no atlas at {self.path} (no {MANIFEST}): run `hyrax atlas` to build one"
            )

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def max_level(self) -> int:
        return int(self.manifest["max_level"])

    def tiles(self, z: int) -> list[tuple[int, int]]:
        """The tiles (tx, ty) of level z that exist."""
        listed = json.loads((self.path / str(z) / "tiles.json").read_text())
        return [tuple(pair) for pair in listed["tiles"]]

    def cells(self, z: int, tx: int, ty: int) -> dict:
        """A tile's cells: ``col``, ``row``, ``object_id``, ``x``, ``y``, ``count`` (and ``value``)."""
        return json.loads((self.path / str(z) / str(tx) / f"{ty}.json").read_text())

    def image_path(self, z: int, tx: int, ty: int) -> Path:
        return self.path / str(z) / str(tx) / f"{ty}.{self.manifest['image_format']}"

    def box(self, z: int, tx: int, ty: int) -> list[float]:
        return tile_box(self.manifest["extent"], z, tx, ty)

    def __repr__(self) -> str:
        m = self.manifest
        state = "complete" if self.complete else "incomplete"
        return (
            f"Atlas({self.path}: {m.get('objects', 0):,} objects, levels 0..{m.get('max_level')}, "
            f"{m.get('cells')}x{m.get('cells')} cells of {m.get('cell_px')} px, {state})"
        )


def read_manifest(folder: str | Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def served_file(reduce_run: str | Path, relative: str) -> tuple[bytes, str]:
    """What the live server answers for ``/atlas/<relative>``: (bytes, content type). A path outside the
    format, a missing tile or an unfinished atlas is a FileNotFoundError whose message says why."""
    if not SERVED.fullmatch(relative):
        raise FileNotFoundError(f"/atlas/{relative} is not a file of an atlas ({FORMAT})")
    folder = atlas_dir(reduce_run)
    if relative == MANIFEST:
        manifest = read_manifest(folder)
        if manifest is None or not manifest.get("complete"):
            state = "is being built or was stopped" if manifest else "has not been built"
            raise FileNotFoundError(
                f"the atlas of {reduce_run} {state}: run `hyrax atlas --input-dir {reduce_run}` "
                "(h.atlas()), then reload"
            )
    path = folder / relative
    if not path.is_file():
        raise FileNotFoundError(f"no atlas file {relative} (an empty tile, or outside the map)")
    extension = relative.rsplit(".", 1)[1]
    return path.read_bytes(), IMAGE_TYPES.get(extension, "application/json")
