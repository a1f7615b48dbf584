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
     "made_from": {"reduce_run": "...", "results_rows": N, "results_version": V}}

Every file is written to a temporary name and renamed into place, so a file that exists is whole; a
rebuild of a killed build skips the finished work and the manifest says ``"complete": false`` until the
end. A change of the map or of any setting above starts the atlas over.

Live server URLs (the ``hyrax visualize`` server, behind its Host and session-token checks like every
route; the token as ``?token=...``, the cookie or the ``X-Hyrax-Token`` header)::

    GET /atlas/manifest.json?token=T
    GET /atlas/{z}/tiles.json?token=T
    GET /atlas/{z}/{tx}/{ty}.webp?token=T     (or .png: the manifest's image_format)
    GET /atlas/{z}/{tx}/{ty}.json?token=T

i.e. ``/atlas/`` + the path in the folder. A missing tile is a 404; a map without a complete atlas
answers 404 for the manifest, with a JSON ``{"error": ...}`` that says to run ``hyrax atlas``.
"""

from __future__ import annotations

#: The format this module writes and reads (the manifest's "format").
FORMAT = "hyrax-atlas/1"
#: The atlas folder in a reduce_dimensions run.
ATLAS_DIR = "atlas"
MANIFEST = "manifest.json"
