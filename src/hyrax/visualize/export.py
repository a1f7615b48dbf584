"""A map as a folder any static web server can host: ``hyrax visualize --export DIR`` and
``h.visualize().export(DIR)``. A colleague browses it, zooms through the atlas and searches objects by
id with no Python and no server of ours (``python -m http.server`` or any web host will do).

Format ``hyrax-export/1``, paths relative to the folder::

    index.html                 the map page (Bokeh inline: nothing fetched from the network)
    export.json                what is here (below); written last: a folder without it is unfinished
    atlas/...                  the run's atlas (hyrax-atlas/1, :mod:`hyrax.visualize.atlas`), unchanged
    points/{z}/{tx}/{ty}.json  the points drawn at zoom level z in tile (tx, ty) of the atlas's square
                               (its tile geometry, also without an atlas): at most ``per_tile`` of them,
                               those of lowest sampling priority (as the live map draws them), all of them
                               at the deepest level (the atlas's, or deeper until a tile holds
                               ``per_tile`` objects on average); column-wise: object_id, x, y, thumbnail, map_colour,
                               then the catalog's columns, and count (objects in the tile)
    objects/{shard}.json       the objects whose id hashes to that shard (FNV-1a 32 of its UTF-8 bytes,
                               modulo ``shards``): {id: {row, x, y, thumbnail, columns, neighbours:
                               {object_id, distance, thumbnail}}}; the object is first of its neighbours
    thumbs/{row // 1000}/{row}.png   each object's thumbnail, by map row

``export.json``: ``{"format": "hyrax-export/1", "objects": N, "extent": [x0, y0, x1, y1] (the square),
"points": {"max_level": L, "per_tile": P}, "shards": S, "neighbours": k, "atlas": bool, "columns":
[...], "color": column or null}``.

Memory stays bounded as the map grows: the points of a level are ordered by (tile, priority) with two
8-byte arrays an object, the neighbours go through a memory-mapped file, and every file is written from
the rows of one tile or one shard.

>>> from hyrax.visualize.export import shard_of
>>> shard_of("J0001", 7)
2
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from hyrax.visualize.source import OWN, MapSource

logger = logging.getLogger(__name__)

FORMAT = "hyrax-export/1"
DESCRIPTION = "export.json"
#: Most points in one tile's file (the page draws the files of the tiles in view: a few of them).
POINTS_PER_TILE = 4000
#: Objects per shard of objects/ (one request fetches an object's record with its neighbours).
OBJECTS_PER_SHARD = 500
#: Thumbnails per folder of thumbs/.
THUMBS_PER_FOLDER = 1000
#: Rows handled at a time when neighbours are searched and thumbnails drawn.
BATCH = 4096


def shard_of(object_id: str, shards: int) -> int:
    """The shard of an object id: FNV-1a (32 bits) of its UTF-8 bytes modulo ``shards`` (the page
    computes the same, in ``js/exported.js``)."""
    value = 0x811C9DC5
    for byte in str(object_id).encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value % shards


def thumbnail_path(row: int) -> str:
    return f"thumbs/{row // THUMBS_PER_FOLDER}/{row}.png"


def square_extent(source: MapSource) -> tuple[float, float, float, float]:
    """The atlas's square (hyrax-atlas/1): the padded bounding box widened about its centre."""
    x0, y0, x1, y1 = source.extent()
    half = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def atlas_manifest(reduce_run: Path) -> dict | None:
    """The manifest of the run's atlas (hyrax-atlas/1) when it is complete, else None."""
    from hyrax.visualize.atlas import FORMAT as ATLAS_FORMAT
    from hyrax.visualize.atlas import atlas_dir, read_manifest

    manifest = read_manifest(atlas_dir(reduce_run))
    if not manifest or manifest.get("format") != ATLAS_FORMAT or not manifest.get("complete"):
        return None
    return manifest


#: Most bytes of atlas files embedded in a standalone page (its coarser levels, whole).
EMBEDDED_BYTES = 8 * 2**20


def embedded_atlas(reduce_run: Path, budget: int = EMBEDDED_BYTES) -> dict | None:
    """The run's atlas for a standalone page, which can fetch nothing: its levels from the coarsest on,
    whole, while their files fit ``budget`` bytes (tiles as data URIs, cells and tile lists as JSON);
    the manifest's ``max_level`` is the deepest embedded, past which the page shows single objects. None
    without a complete atlas or when not even level 0 fits."""
    import base64

    from hyrax.visualize.atlas import atlas_dir

    manifest = atlas_manifest(reduce_run)
    if manifest is None:
        return None
    folder, embedded, used = atlas_dir(reduce_run), {}, 0
    kind = f"image/{manifest['image_format']}"
    for z in range(int(manifest["max_level"]) + 1):
        files = [p for p in (folder / str(z)).rglob("*") if p.is_file() and not p.name.startswith(".")]
        size = sum(p.stat().st_size for p in files)
        if used + size * 4 / 3 > budget:  # base64: 4 bytes for 3
            break
        for path in files:
            name = path.relative_to(folder).as_posix()
            if path.suffix == ".json":
                embedded[name] = json.loads(path.read_text())
            else:
                embedded[name] = f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"
        used += size * 4 / 3
        deepest = z
    if not embedded:
        return None
    return {"manifest": {**manifest, "max_level": deepest}, "base": "", "embedded": embedded}


class Exporter:
    """Writes one export folder (see the module documentation) for a map."""

    def __init__(self, config, source: MapSource, directory: Path, neighbours: int = 8, **options):
        """``options``: the map's ``color``, ``color_scale``, ``stretch``, ``band`` and ``max_points``, and
        ``per_tile``: the most points in a tile's file above the deepest level."""
        self.config, self.source = config, source
        self.directory, self.k = Path(directory), int(neighbours)
        self.options = {
            "color": None,
            "color_scale": "auto",
            "stretch": "asinh",
            "band": None,
            "max_points": 50_000,
            "per_tile": POINTS_PER_TILE,
            **options,
        }
        self.atlas = atlas_manifest(self.source.reduce_run)
        self.extent = tuple(self.atlas["extent"]) if self.atlas else square_extent(self.source)
        total = max(self.source.total, 1)
        self.per_tile = int(self.options["per_tile"])
        deepest = math.ceil(math.log(total / self.per_tile, 4)) if total > self.per_tile else 0
        self.max_level = max(deepest, int(self.atlas["max_level"]) if self.atlas else 0)
        self.shards = max(1, math.ceil(self.source.total / OBJECTS_PER_SHARD))
        self.colour = source.colour_scale(self.options["color"], self.options["color_scale"])

    def run(self) -> Path:
        from hyrax.progress import Progress

        self._prepare()
        steps = [self._atlas, self._thumbnails, self._points, self._objects, self._page]
        with Progress("export: writing the map", total=len(steps)) as progress:
            for step in steps:
                step()
                progress.update(1)
        description = {
            "format": FORMAT,
            "objects": self.source.total,
            "extent": list(self.extent),
            "points": {"max_level": self.max_level, "per_tile": self.per_tile},
            "shards": self.shards,
            "neighbours": self.k,
            "atlas": self.atlas is not None,
            "columns": self.source.columns(),
            "color": self.options["color"],
        }
        write_file(self.directory / DESCRIPTION, json.dumps(description, indent=1).encode())
        return self.directory

    def _prepare(self) -> None:
        """An empty folder, or an earlier export (refreshed in place); never someone's other files."""
        from hyrax.errors import ResultsError

        if self.directory.exists() and any(self.directory.iterdir()):
            earlier = (self.directory / DESCRIPTION).is_file() or (self.directory / ".hyrax-export").is_file()
            if not earlier:
                raise ResultsError(
                    f"--export {self.directory}: the folder holds files that are not a map export; "
                    f"name a new or empty folder (or an earlier export to refresh it)."
                )
            (self.directory / DESCRIPTION).unlink(missing_ok=True)  # unfinished until written again
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / ".hyrax-export").write_text(FORMAT)

    def _atlas(self) -> None:
        """The atlas folder, unchanged (hard links where the file system allows: no copy of the tiles)."""
        from hyrax.visualize.atlas import ATLAS_DIR

        target = self.directory / ATLAS_DIR
        if self.atlas is None:
            logger.warning(
                "%s has no complete atlas: the export shows points and thumbnails only (run `hyrax atlas` "
                "first for the zoomable thumbnails)",
                self.source.reduce_run,
            )
            return
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(
            self.source.reduce_run / ATLAS_DIR,
            target,
            copy_function=_link_or_copy,
            ignore=shutil.ignore_patterns(".work"),
        )

    def _thumbnails(self) -> None:
        """Each object's 64-pixel thumbnail (those already written by an earlier export are kept); a
        placeholder where an image cannot be read (the first reasons logged, then a count)."""
        from hyrax.visualize.mapdata import TOLD
        from hyrax.visualize.stretch import placeholder_png, png_bytes

        stretch, band = self.options["stretch"], self.options["band"]
        has_images, placeholder, failed = self.source.provider() is not None, placeholder_png(), 0
        for row in range(self.source.total):
            path = self.directory / thumbnail_path(row)
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                picture = png_bytes(self.source.image(row, stretch, band), size=64) if has_images else None
            except Exception as error:  # a broken image is a placeholder tile and a logged reason
                failed += 1
                if failed <= TOLD:
                    logger.warning("no thumbnail for map row %d: %s", row, error)
                picture = None
            write_file(path, picture or placeholder)
        if failed > TOLD:
            logger.warning(
                "no thumbnails for %d more objects (the first %d reasons are above)", failed - TOLD, TOLD
            )

    def _points(self) -> None:
        for z in range(self.max_level + 1):
            order, keys = self._tile_order(z)
            starts = np.flatnonzero(np.diff(keys[order], prepend=-1))
            ends = np.append(starts[1:], len(order))
            tiles = 2**z
            for start, end in zip(starts, ends, strict=True):
                key = int(keys[order[start]])
                last = end if z == self.max_level else min(end, start + self.per_tile)  # all, deepest
                rows = np.sort(order[start:last])
                tx, ty = divmod(key, tiles)
                path = self.directory / "points" / str(z) / str(tx) / f"{ty}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                answer = self._columns(rows)
                answer.update({"z": z, "tx": tx, "ty": ty, "count": int(end - start)})
                write_file(path, json.dumps(answer).encode())

    def _tile_order(self, z: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ordered by (tile at level z, sampling priority), and each row's tile key tx * 2**z + ty."""
        x0, y0, x1, y1 = self.extent
        tiles, size = 2**z, (x1 - x0) / 2**z
        keys = np.empty(self.source.total, dtype=np.int64)
        for start in range(0, self.source.total, 1 << 20):
            x = self.source.x[start : start + (1 << 20)].astype(np.float64)
            y = self.source.y[start : start + (1 << 20)].astype(np.float64)
            tx = np.clip(np.floor((x - x0) / size), 0, tiles - 1).astype(np.int64)
            ty = np.clip(np.floor((y1 - y) / size), 0, tiles - 1).astype(np.int64)
            keys[start : start + len(x)] = tx * tiles + ty
        return np.lexsort((self.source.priority, keys)), keys

    def _columns(self, rows: np.ndarray) -> dict:
        """The page's columns of these rows, as lists (ids, coordinates, thumbnails, colour, catalog)."""
        columns = {name: _listed(values) for name, values in self.source.columns_of(rows).items()}
        answer = {
            "object_id": self.source.ids(rows).astype(str).tolist(),
            "x": self.source.x[rows].astype(float).tolist(),
            "y": self.source.y[rows].astype(float).tolist(),
            "thumbnail": [thumbnail_path(int(r)) for r in rows],
            "columns": columns,
        }
        if self.colour is not None:
            raw = self.source.columns_of(rows)[self.colour.column]
            answer[OWN["colour"]] = _listed(self.colour.encode(raw))
        return answer

    def _objects(self) -> None:
        """objects/{shard}.json: each object's record with its metadata and its neighbours."""
        with tempfile.TemporaryDirectory(dir=self.directory, prefix=".neighbours-") as scratch:
            found, distances = self._neighbours(Path(scratch))
            shards = np.empty(self.source.total, dtype=np.int32)
            for start in range(0, self.source.total, 1 << 16):
                rows = np.arange(start, min(start + (1 << 16), self.source.total))
                shards[rows] = [shard_of(i, self.shards) for i in self.source.ids(rows)]
            order = np.argsort(shards, kind="stable")
            bounds = np.searchsorted(shards[order], np.arange(self.shards + 1))
            (self.directory / "objects").mkdir(exist_ok=True)
            for shard in range(self.shards):
                rows = np.sort(order[bounds[shard] : bounds[shard + 1]])
                records = self._records(rows, found, distances)
                write_file(self.directory / "objects" / f"{shard}.json", json.dumps(records).encode())
            del found, distances

    def _records(self, rows: np.ndarray, found, distances) -> dict:
        if not len(rows):
            return {}
        table = self._columns(rows)
        near = found[rows] if found is not None else rows[:, None]
        far = distances[rows] if found is not None else np.zeros((len(rows), 1), np.float32)
        listed = np.unique(near[near >= 0])
        names = dict(zip(listed.tolist(), self.source.ids(listed).astype(str).tolist(), strict=True))
        records = {}
        for position, row in enumerate(rows):
            rows_near = [int(r) for r in near[position] if r >= 0]
            records[table["object_id"][position]] = {
                "row": int(row),
                "x": table["x"][position],
                "y": table["y"][position],
                "thumbnail": table["thumbnail"][position],
                "columns": {name: values[position] for name, values in table["columns"].items()},
                "neighbours": {
                    "object_id": [names[r] for r in rows_near],
                    "distance": [float(d) for d in far[position][: len(rows_near)]],
                    "thumbnail": [thumbnail_path(r) for r in rows_near],
                },
            }
        return records

    def _neighbours(self, scratch: Path):
        """Each map row's k nearest neighbours (itself first) as map rows and distances, in memory-mapped
        arrays; (None, None) when the map does not say which inference run it mapped."""
        from hyrax.visualize.nearest import NeighbourSearch

        if self.k <= 0 or self.source.infer_run is None:
            if self.k > 0:
                logger.warning(
                    "the export shows no neighbours: %s does not name its inference run",
                    self.source.reduce_run,
                )
            return None, None
        found = np.lib.format.open_memmap(
            scratch / "rows.npy", "w+", np.int64, (self.source.total, self.k + 1)
        )
        distances = np.lib.format.open_memmap(
            scratch / "d.npy", "w+", np.float32, (self.source.total, self.k + 1)
        )
        NeighbourSearch(self.config, self.source, self.k + 1).fill(found, distances, BATCH)
        return found, distances

    def _page(self) -> None:
        from hyrax.visualize.mapdata import gather
        from hyrax.visualize.page import build_layout, page_html

        options = {k: self.options[k] for k in ("color", "color_scale", "max_points")}
        data = gather(
            self.config, self.source.reduce_run, thumbnails=False, neighbours=0, source=self.source, **options
        )
        data.thumbnails = [thumbnail_path(int(r)) for r in self.source.rows_of(data.ids)]
        data.extent = self.source.extent()  # fixed ranges: the page asks for the files of its viewport
        data.exported = {
            "extent": list(self.extent),
            "max_level": self.max_level,
            "shards": self.shards,
            "objects": self.source.total,
        }
        if self.atlas is not None:
            data.atlas = {"manifest": self.atlas, "base": "atlas/"}
        title = "Hyrax latent space"
        layout = build_layout(data, self.options["color"], title, color_scale=self.options["color_scale"])
        html = page_html(layout, title)
        write_file(self.directory / "index.html", html.encode("utf-8"))


def _listed(values) -> list:
    """A column as JSON values: numbers (NaN as null), text as str."""
    values = np.asarray(values)
    if values.dtype.kind in "biuf":
        floats = values.astype(np.float64)
        return [None if not math.isfinite(v) else v for v in floats.tolist()]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_file(path: Path, data: bytes) -> None:
    """A whole file or none (a temporary name renamed into place; not synced: an export is redone)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
