"""Building an atlas (:mod:`hyrax.visualize.atlas`) as a stream, its memory bounded whatever the map's size.

1. One pass over the map's coordinates: the square (min and max of x and y).
2. One pass assigning each object its cell at the deepest level ``L`` and appending a 28-byte record
   (map row, cell, x, y, value) to the file of its bucket, the tile at level ``s = max(0, L - 3)`` that
   holds it (``.work/buckets/{bx}_{by}.bin``). A bucket spans at most ``(8 * cells)**2`` cells of level
   ``L`` (16,384 for 16 cells), so its per-cell sums are small dense arrays however many objects it holds.
3. Per bucket: its file read a chunk at a time twice (the sums per cell, then the best member of each
   cell), the representatives' images read from the run's dataset and drawn, levels ``L`` down to ``s``
   tiled in memory, and a summary of its level-``s`` tile (representatives, sums, thumbnails) saved in
   ``.work/summaries/{s}/``: the bucket's done mark. A rerun skips the buckets whose summary exists.
4. Levels ``s - 1`` .. 0: each tile from its four children's summaries, which then go.
5. ``{z}/tiles.json`` per level; the manifest says complete; ``.work`` goes.

Held at once: a chunk of records (:data:`CHUNK` x 28 bytes), one bucket's cells with their thumbnails
(16,384 x ``cell_px**2`` x 4 bytes: 64 MB at 32 px) and four summaries.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from hyrax.errors import ConfigError, DataError
from hyrax.faults import fault_point
from hyrax.visualize.atlas import (
    FORMAT,
    MANIFEST,
    TYPICAL,
    Atlas,
    AtlasSettings,
    atlas_dir,
    auto_level,
    read_manifest,
    tile_box,
)
from hyrax.visualize.atlas_cells import Cells, best_per_group, cell_picture, merge, value_score

logger = logging.getLogger(__name__)

#: One object in a bucket file.
RECORD = np.dtype(
    [("row", "<i8"), ("gx", "<u4"), ("gy", "<u4"), ("x", "<f4"), ("y", "<f4"), ("value", "<f4")]
)
#: Levels tiled inside one bucket below its own (a bucket spans 2**SPAN_LEVELS tiles per side at L).
SPAN_LEVELS = 3
#: Map rows read at a time.
READ_BATCH = 262_144
#: Bucket records read at a time.
CHUNK = 1 << 20
WEBP_QUALITY = 85
#: libwebp's effort (0-6): 2 encodes a tile in about half the time of the default 4, ~6% larger.
WEBP_METHOD = 2
#: Objects whose missing image is logged with its reason (the rest are counted).
TOLD = 10
PLACEHOLDER = (68, 68, 68, 255)
WORK = ".work"


def write_atomic(path: Path, data: bytes, sync: bool = False) -> None:
    """Write to a temporary name and rename: a file that exists is whole. Tiles skip the fsync (a
    killed process leaves whole files or none; thousands of syncs would cost more than the tiles)."""
    from hyrax.results.run_dir import write_bytes_atomic

    write_bytes_atomic(path, data, sync=sync)


def build_atlas(config: Mapping, reduce_run: str | Path, settings: AtlasSettings | None = None) -> Atlas:
    """Build (or finish) the atlas of a reduce_dimensions run in ``<run>/atlas`` and return it. A
    complete atlas of the same map and settings is returned as it is; an unfinished one is finished.

    >>> atlas = build_atlas(h.config, reduce_run)                           # doctest: +SKIP
    """
    settings = settings or AtlasSettings.from_config(config)
    AtlasBuilder(config, Path(reduce_run), settings).build()
    return Atlas(atlas_dir(reduce_run))


class AtlasBuilder:
    """Builds (or finishes) the atlas of one reduce_dimensions run (see the module documentation)."""

    def __init__(self, config: Mapping, reduce_run: Path, settings: AtlasSettings):
        from hyrax.visualize.source import MapSource

        self.config, self.reduce_run, self.settings = config, Path(reduce_run), settings
        self.folder = atlas_dir(reduce_run)
        self.work = self.folder / WORK
        self.source = MapSource(config, reduce_run, coordinates=False)
        self.typical = settings.choose == TYPICAL
        self.sign = -1.0 if settings.order == "max" else 1.0
        self.failed = 0

    # -- the whole build ------------------------------------------------------------------------------
    def build(self) -> None:
        from hyrax import locks

        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            handle = locks.take(self.folder / ".lock", "atlas")
        except locks.Busy as busy:
            from hyrax.errors import RunBusyError

            raise RunBusyError(
                f"the atlas {self.folder} is being built by {busy.holder}: wait for it (or stop it)."
            ) from None
        try:
            self._build()
        finally:
            locks.release(handle)

    def _build(self) -> None:
        manifest = self._start()
        if manifest.get("complete"):
            return
        self.extent, self.L = manifest["extent"], int(manifest["max_level"])
        self.s = max(0, self.L - SPAN_LEVELS)
        self.n = 2**self.L * self.settings.cells  # cells per side at the deepest level
        buckets = self._bucket()
        from hyrax.progress import Progress

        with Progress("atlas: tiles", total=len(buckets), unit="bucket") as progress:
            for bx, by in buckets:
                self._tile_bucket(bx, by)
                progress.update(1)
        for z in range(self.s - 1, -1, -1):
            self._tile_level(z)
        self._finish(manifest)

    def _start(self) -> dict:
        """The manifest of this build: the existing one when it was made from the same map with the same
        settings, else a new one (the old atlas cleared)."""
        recorded = {
            "format": FORMAT,
            "objects": self.source.total,
            **self.settings.recorded(),
            "made_from": {
                "reduce_run": str(self.reduce_run.resolve()),
                "results_rows": self.source.total,
                "results_version": self.source.table.version,
            },
        }
        if self.settings.max_level is None:
            recorded["max_level"] = auto_level(self.source.total, self.settings.cells)
        else:
            recorded["max_level"] = self.settings.max_level
        existing = read_manifest(self.folder)
        if existing is not None and all(existing.get(k) == v for k, v in recorded.items()):
            return existing
        if existing is not None:
            logger.info(
                "atlas: the map or the settings changed since %s was built: starting over", self.folder
            )
        for entry in self.folder.iterdir():
            if entry.name != ".lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        self._check_sources()
        manifest = {**recorded, "extent": self._extent(), "build": secrets.token_hex(8), "complete": False}
        write_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=1).encode(), sync=True)
        return manifest

    def _check_sources(self) -> None:
        if self.source.provider() is None:
            raise DataError(
                f"the atlas draws the objects' images, and the infer data of {self.source.infer_run} could "
                f"not be opened (see the warning above): check that run's [data_request.infer]."
            )
        if self.typical:
            return
        from hyrax.plugins import did_you_mean

        columns = self.source.columns()
        if self.settings.choose not in columns:
            raise ConfigError(
                f'atlas.choose = "{self.settings.choose}" is neither "{TYPICAL}" nor a column of the map.'
                f"{did_you_mean(self.settings.choose, columns)} Columns: {', '.join(columns) or '(none)'}."
            )

    def _extent(self) -> list[float]:
        """The map's square: its bounding box padded 2% per side, widened about its centre."""
        low, high = np.full(2, np.inf), np.full(2, -np.inf)
        for _, batch in self.source.table.iter_batches(READ_BATCH):
            xy = self._xy(batch)
            finite = np.isfinite(xy).all(axis=1)
            if finite.any():
                low = np.minimum(low, xy[finite].min(axis=0))
                high = np.maximum(high, xy[finite].max(axis=0))
        if not np.isfinite(low).all():
            low, high = np.zeros(2), np.ones(2)
        pad = np.maximum((high - low) * 0.02, 1e-6)
        low, high = low - pad, high + pad
        half, centre = (high - low).max() / 2, (low + high) / 2
        return [
            float(centre[0] - half),
            float(centre[1] - half),
            float(centre[0] + half),
            float(centre[1] + half),
        ]

    @staticmethod
    def _xy(batch: np.ndarray) -> np.ndarray:
        batch = batch.reshape(len(batch), -1).astype(np.float64)
        return batch[:, :2] if batch.shape[1] > 1 else np.column_stack([batch[:, 0], np.zeros(len(batch))])

    # -- pass 2: objects to bucket files -------------------------------------------------------------------
    def _bucket(self) -> list[tuple[int, int]]:
        """Every object's deepest cell, appended to its bucket's file; the buckets (done once: a rerun
        reads the list, a killed bucketing is redone)."""
        from hyrax.progress import Progress

        done = self.work / "buckets.json"
        if done.is_file():
            return [tuple(pair) for pair in json.loads(done.read_text())["buckets"]]
        folder = self.work / "buckets"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        x0, _, x1, y1 = self.extent
        size = (x1 - x0) / self.n
        shift = self.L - self.s
        start, skipped, present = 0, 0, set()
        with Progress("atlas: cells", total=self.source.total) as progress:
            for _, batch in self.source.table.iter_batches(READ_BATCH):
                rows = np.arange(start, start + len(batch), dtype=np.int64)
                start += len(batch)
                progress.update(len(batch))
                xy = self._xy(batch)
                finite = np.isfinite(xy).all(axis=1)
                skipped += int((~finite).sum())
                rows, xy = rows[finite], xy[finite]
                records = np.empty(len(rows), dtype=RECORD)
                records["row"], records["x"], records["y"] = rows, xy[:, 0], xy[:, 1]
                records["gx"] = np.clip(np.floor((xy[:, 0] - x0) / size), 0, self.n - 1)
                records["gy"] = np.clip(np.floor((y1 - xy[:, 1]) / size), 0, self.n - 1)
                records["value"] = np.nan if self.typical else self._values(rows)
                bucket_x = (records["gx"] // self.settings.cells) >> shift
                bucket_y = (records["gy"] // self.settings.cells) >> shift
                key = (bucket_y.astype(np.int64) << 32) | bucket_x
                order = np.argsort(key, kind="stable")
                keys, starts = np.unique(key[order], return_index=True)
                for k, first, last in zip(keys, starts, [*starts[1:], len(order)], strict=True):
                    bucket = (int(k & 0xFFFFFFFF), int(k >> 32))
                    present.add(bucket)
                    with open(folder / f"{bucket[0]}_{bucket[1]}.bin", "ab") as handle:
                        records[order[first:last]].tofile(handle)
        if skipped:
            logger.warning("atlas: %d objects have no finite map coordinates and are left out", skipped)
        buckets = sorted(present, key=lambda b: (b[1], b[0]))
        write_atomic(done, json.dumps({"buckets": buckets, "skipped": skipped}).encode(), sync=True)
        return buckets

    def _values(self, rows: np.ndarray) -> np.ndarray:
        from hyrax.visualize.source import SCORE

        if self.settings.choose == SCORE:
            values = self.source.scores(rows)
        else:
            values = self.source.columns_of(rows)[self.settings.choose]
        values = np.asarray(values)
        if values.dtype.kind not in "biuf":
            raise ConfigError(
                f'atlas.choose = "{self.settings.choose}" is a column of {values.dtype} values: the atlas '
                f'picks the largest or smallest of a numeric column (or "{TYPICAL}").'
            )
        return values.astype(np.float32)

    # -- pass 3: one bucket, levels L .. s --------------------------------------------------------------
    def _summary(self, z: int, tx: int, ty: int) -> Path:
        return self.work / "summaries" / str(z) / f"{tx}_{ty}.npz"

    def _chunks(self, path: Path) -> Iterator[np.ndarray]:
        total = path.stat().st_size // RECORD.itemsize
        for first in range(0, total, CHUNK):
            yield np.fromfile(
                path, dtype=RECORD, count=min(CHUNK, total - first), offset=first * RECORD.itemsize
            )

    def _tile_bucket(self, bx: int, by: int) -> None:
        summary = self._summary(self.s, bx, by)
        path = self.work / "buckets" / f"{bx}_{by}.bin"
        if summary.is_file():
            path.unlink(missing_ok=True)
            return
        span = 2 ** (self.L - self.s) * self.settings.cells
        base_x, base_y = bx * span, by * span
        count = np.zeros(span * span, dtype=np.int64)
        sx, sy = np.zeros(span * span), np.zeros(span * span)
        for chunk in self._chunks(path):
            local = (chunk["gy"].astype(np.int64) - base_y) * span + (chunk["gx"].astype(np.int64) - base_x)
            count += np.bincount(local, minlength=span * span)
            sx += np.bincount(local, weights=chunk["x"].astype(np.float64), minlength=span * span)
            sy += np.bincount(local, weights=chunk["y"].astype(np.float64), minlength=span * span)
        cx, cy = sx / np.maximum(count, 1), sy / np.maximum(count, 1)
        best = np.full(span * span, np.inf)
        rep = np.full(span * span, np.iinfo(np.int64).max)
        rx, ry, value = (np.zeros(span * span, dtype=np.float32) for _ in range(3))
        for chunk in self._chunks(path):
            local = (chunk["gy"].astype(np.int64) - base_y) * span + (chunk["gx"].astype(np.int64) - base_x)
            x, y = chunk["x"].astype(np.float64), chunk["y"].astype(np.float64)
            if self.typical:
                score = (x - cx[local]) ** 2 + (y - cy[local]) ** 2
            else:
                score = value_score(chunk["value"], self.sign)
            pick = best_per_group(local, score, chunk["row"])
            cell, s, r = local[pick], score[pick], chunk["row"][pick]
            better = (s < best[cell]) | ((s == best[cell]) & (r < rep[cell]))
            cell, pick = cell[better], pick[better]
            best[cell], rep[cell] = score[pick], chunk["row"][pick]
            rx[cell], ry[cell], value[cell] = chunk["x"][pick], chunk["y"][pick], chunk["value"][pick]
        present = np.flatnonzero(count)
        cells = Cells(
            gx=base_x + present % span,
            gy=base_y + present // span,
            count=count[present],
            sx=sx[present],
            sy=sy[present],
            rep=rep[present],
            rx=rx[present],
            ry=ry[present],
            value=value[present],
            ids=self.source.ids(rep[present]),
            thumbs=self._thumbnails(rep[present]),
        )
        for z in range(self.L, self.s - 1, -1):
            if z < self.L:
                cells = merge(cells, self.typical, self.sign)
            self._write_tiles(z, cells)
        summary.parent.mkdir(parents=True, exist_ok=True)
        cells.save(summary)
        path.unlink()

    def _thumbnails(self, rows: np.ndarray) -> np.ndarray:
        """Each row's picture (its dataset's image or light curve) as a cell_px square RGBA thumbnail."""
        side = self.settings.cell_px
        thumbs = np.empty((len(rows), side, side, 4), dtype=np.uint8)
        for position in np.argsort(rows, kind="stable"):  # in row order: datasets read ahead
            try:
                picture = self.source.image(int(rows[position]), self.settings.stretch, self.settings.band)
                thumbs[position] = cell_picture(picture, side)
            except Exception as error:  # a broken image is a grey cell and a logged reason, never a crash
                self.failed += 1
                if self.failed <= TOLD:
                    logger.warning("atlas: no image for map row %d: %s", rows[position], error)
                thumbs[position] = PLACEHOLDER
        return thumbs

    # -- pass 4: levels above the buckets -----------------------------------------------------------
    def _tile_level(self, z: int) -> None:
        """Level z's tiles from level z + 1's summaries (each tile from its four children)."""
        children = sorted(
            tuple(int(v) for v in path.stem.split("_"))
            for path in (self.work / "summaries" / str(z + 1)).glob("*.npz")
        )
        for px, py in sorted({(tx >> 1, ty >> 1) for tx, ty in children}, key=lambda p: (p[1], p[0])):
            kids = [self._summary(z + 1, 2 * px + i, 2 * py + j) for j in (0, 1) for i in (0, 1)]
            kids = [kid for kid in kids if kid.is_file()]
            target = self._summary(z, px, py)
            if not target.is_file():
                merged = merge(Cells.concat([Cells.load(kid) for kid in kids]), self.typical, self.sign)
                self._write_tiles(z, merged)
                target.parent.mkdir(parents=True, exist_ok=True)
                merged.save(target)
            for kid in kids:
                kid.unlink()

    # -- tiles --------------------------------------------------------------------------------------
    def _write_tiles(self, z: int, cells: Cells) -> None:
        cells_per_tile = self.settings.cells
        tx, ty = cells.gx // cells_per_tile, cells.gy // cells_per_tile
        order = np.lexsort((cells.gx, cells.gy, tx, ty))
        key = (ty[order] << 32) | tx[order]
        _, starts = np.unique(key, return_index=True)
        for first, last in zip(starts, [*starts[1:], len(order)], strict=True):
            part = cells.take(order[first:last])
            self.write_tile(z, int(part.gx[0] // cells_per_tile), int(part.gy[0] // cells_per_tile), part)

    def write_tile(self, z: int, tx: int, ty: int, cells: Cells) -> None:
        """Tile (tx, ty) of level z: its image and its cells' JSON, each written whole."""
        from PIL import Image

        side, per = self.settings.cell_px, self.settings.cells
        col, row = cells.gx - tx * per, cells.gy - ty * per
        canvas = np.zeros((per * side, per * side, 4), dtype=np.uint8)
        for k in range(len(col)):
            canvas[row[k] * side : (row[k] + 1) * side, col[k] * side : (col[k] + 1) * side] = cells.thumbs[k]
        buffer = io.BytesIO()
        if self.settings.image_format == "webp":
            Image.fromarray(canvas, "RGBA").save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
        else:
            Image.fromarray(canvas, "RGBA").save(buffer, "PNG", compress_level=6)
        cells_json = {
            "z": z,
            "tx": tx,
            "ty": ty,
            "box": tile_box(self.extent, z, tx, ty),
            "col": col.tolist(),
            "row": row.tolist(),
            "object_id": [str(i) for i in cells.ids],
            "x": cells.rx.astype(float).tolist(),
            "y": cells.ry.astype(float).tolist(),
            "count": cells.count.tolist(),
        }
        if not self.typical:
            cells_json["value"] = [None if np.isnan(v) else float(v) for v in cells.value]
        folder = self.folder / str(z) / str(tx)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{ty}.{self.settings.image_format}", buffer.getvalue())
        write_atomic(folder / f"{ty}.json", json.dumps(cells_json, separators=(",", ":")).encode())
        fault_point("atlas.tile_written")

    # -- pass 5: the index of each level and the manifest ------------------------------------------------
    def _finish(self, manifest: dict) -> None:
        skipped = json.loads((self.work / "buckets.json").read_text())["skipped"]
        levels = []
        for z in range(self.L + 1):
            tiles, filled = [], 0
            level = self.folder / str(z)
            for column in sorted(level.iterdir(), key=lambda p: int(p.name)) if level.is_dir() else ():
                if not column.is_dir():
                    continue
                for path in sorted(column.glob("*.json"), key=lambda p: int(p.stem)):
                    tiles.append([int(column.name), int(path.stem)])
                    filled += len(json.loads(path.read_text())["col"])
            level.mkdir(parents=True, exist_ok=True)
            write_atomic(level / "tiles.json", json.dumps({"z": z, "tiles": tiles}).encode())
            levels.append({"z": z, "tiles": len(tiles), "filled": filled})
        if self.failed:
            logger.warning("atlas: %d objects had no image and show as grey cells", self.failed)
        manifest = {**manifest, "levels": levels, "placed": manifest["objects"] - skipped, "complete": True}
        write_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=1).encode(), sync=True)
        shutil.rmtree(self.work, ignore_errors=True)
