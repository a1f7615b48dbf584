"""The map's data: which objects the standalone page draws, with their coordinates, metadata, outlier
scores, thumbnails, neighbours and a density of every object (read through
:class:`~hyrax.visualize.source.MapSource`). The page itself is :mod:`hyrax.visualize.page`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hyrax.errors import ConfigError
from hyrax.plugins import did_you_mean
from hyrax.visualize.colours import ColourScale
from hyrax.visualize.source import OWN, MapSource

logger = logging.getLogger(__name__)

#: Density image resolution (cells per side), for the standalone page and the live app's viewports.
DENSITY_BINS = 400

#: Initial azimuth and elevation (degrees) of the 3-D view.
VIEW_ANGLES = (30.0, 20.0)


@dataclass
class MapData:
    """What the page shows: one entry per displayed object."""

    ids: np.ndarray
    coordinates: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    thumbnails: list[str] = field(default_factory=list)
    neighbours: np.ndarray | None = None
    total: int = 0
    #: Density of every object (not only the drawn sample): counts on a grid, and its extent.
    density: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None
    #: Live app only: the density image's source ({url, x, y, w, h}), re-aggregated by the server on zoom.
    density_url: dict | None = None
    #: How the colour column colours the points, chosen over every object (None: from the drawn ones).
    colour: ColourScale | None = None
    #: Labelled objects on the map (object_id, x, y, label, colour): marked on the page.
    marks: dict[str, list] = field(default_factory=dict)
    #: The run's atlas as the page draws it: {"manifest": its manifest.json, "base": the folder's address}.
    atlas: dict | None = None
    #: A static export's page (:mod:`hyrax.visualize.export`): {"extent", "max_level", "shards"}.
    exported: dict | None = None

    def to_dataframe(self):
        """The drawn objects: ``object_id``, the map's coordinates (``map_x``, ``map_y``, and ``map_z``
        for a 3-D map) and every catalog column under its own name."""
        return map_frame(self.ids, self.coordinates, self.columns)


def map_frame(ids, coordinates: np.ndarray, columns: Mapping[str, np.ndarray]):
    """A DataFrame of map objects: ids, the map's own coordinates (namespaced: :data:`OWN`), then
    the catalog's columns, none of them shadowed."""
    import pandas as pd

    frame = {"object_id": ids}
    for axis, name in enumerate(("x", "y", "z")[: coordinates.shape[1]]):
        frame[OWN[name]] = coordinates[:, axis]
    return pd.DataFrame({**frame, **columns})


def gather(
    config: Mapping,
    reduce_run: Path,
    max_points: int = 50_000,
    max_thumbnails: int = 2000,
    stretch: str = "asinh",
    band: int | None = None,
    neighbours: int = 8,
    seed: int = 0,
    thumbnails: bool = True,
    with_density: bool = True,
    source: MapSource | None = None,
    color: str | None = None,
    color_scale: str = "auto",
) -> MapData:
    """Coordinates, metadata, outlier scores, thumbnails and neighbours of the objects the standalone
    page draws (``max_points`` 0: every object; ``thumbnails`` False or ``neighbours`` 0: leave those
    out); past ``max_points``, a sample drawn over a density of every object. ``color``: the column
    that colours the points, on ``color_scale`` (:mod:`hyrax.visualize.colours`)."""
    source = source or MapSource(config, reduce_run)
    extent = source.extent()
    x0, y0, x1, y1 = extent
    limit = max_points if max_points > 0 else source.total
    rows, _ = source.sample(x0, x1, y0, y1, limit)
    ids = source.ids(rows)
    data = MapData(ids=ids, coordinates=source.coordinates(rows), total=source.total)
    if with_density and len(rows) < source.total:
        data.density, data.extent = source.density(extent, DENSITY_BINS), extent
    data.columns.update(source.columns_of(rows))
    data.colour = source.colour_scale(color, color_scale)  # chosen over every object
    if thumbnails and source.provider() is not None:
        data.thumbnails = _thumbnails(source, rows, ids, max_thumbnails, stretch, band)
    if neighbours > 0 and source.infer_run is not None:
        data.neighbours = _neighbours(source.infer_run, rows, neighbours)
    data.marks = label_marks(source)
    return data


#: Colours of labelled objects' marks: interesting, not.
MARK_COLOURS = {1: "#d62728", 0: "#7f7f7f"}


def label_marks(source: MapSource) -> dict[str, list]:
    """Every labelled object on the map (its latest label 1 or 0): object_id, x, y, label, colour."""
    ids, labels = source.labels().labelled()
    rows = source.rows_of(ids) if len(ids) else np.empty(0, dtype=np.int64)
    on_map = rows >= 0
    rows, ids, labels = rows[on_map], ids[on_map], labels[on_map]
    return {
        "object_id": ids.tolist(),
        "x": source.x[rows].astype(float).tolist(),
        "y": source.y[rows].astype(float).tolist(),
        "label": labels.astype(int).tolist(),
        "colour": [MARK_COLOURS[int(v)] for v in labels],
    }


def density_rgba(counts: np.ndarray) -> np.ndarray:
    """Log-scaled counts as a grey-blue (height, width, 4) uint8 image; empty cells transparent."""
    scaled = np.log1p(counts) / max(np.log1p(counts.max()), 1e-9)
    rgba = np.zeros((*counts.shape, 4), dtype=np.uint8)
    rgba[..., 0] = (40 + 60 * scaled).astype(np.uint8)
    rgba[..., 1] = (60 + 90 * scaled).astype(np.uint8)
    rgba[..., 2] = (120 + 135 * scaled).astype(np.uint8)
    rgba[..., 3] = np.where(counts > 0, (60 + 195 * scaled), 0).astype(np.uint8)
    return rgba


def _thumbnails(source: MapSource, rows, ids, limit: int, how: str, band: int | None) -> list[str]:
    from hyrax.visualize.stretch import PLACEHOLDER, png_data_uri

    pictures, failed = [], 0
    for position, row in enumerate(rows):
        if position >= limit:
            pictures.append(PLACEHOLDER)
            continue
        try:
            pictures.append(png_data_uri(source.image(int(row), how, band)))
        except Exception as error:  # a broken image is a placeholder tile and a logged reason, never a crash
            failed += 1
            if failed <= TOLD:
                logger.warning("no thumbnail for %s: %s", ids[position], error)
            pictures.append(PLACEHOLDER)
    if failed > TOLD:
        logger.warning(
            "no thumbnails for %d more objects (the first %d reasons are above)", failed - TOLD, TOLD
        )
    return pictures


#: Objects whose missing thumbnail is logged with its reason (then one line counts the rest).
TOLD = 10


def _neighbours(infer_run: Path, rows: np.ndarray, k: int) -> np.ndarray | None:
    """Nearest neighbours among the drawn objects (map row r is row r of the inference results)."""
    import faiss

    from hyrax.results.store import ResultDataset

    try:
        vectors = (
            ResultDataset(data_location=infer_run).take(rows)[1].reshape(len(rows), -1).astype(np.float32)
        )
    except Exception as error:  # neighbours are a courtesy of the page
        logger.warning("the map shows no neighbours: %s", error)
        return None
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(vectors, min(k + 1, len(rows)))
    return found[:, 1:]


def check_color(data: MapData, color: str | None) -> str | None:
    if color is None or color in data.columns:
        return color
    raise ConfigError(
        f'visualize.color_column = "{color}" is not a column of the map.{did_you_mean(color, data.columns)} '
        f"Columns: {', '.join(data.columns) or '(none: the data has no metadata)'}."
    )


def project(xyz: np.ndarray, azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray]:
    """2-D screen coordinates of 3-D points turned by ``azimuth`` about z, seen from ``elevation``."""
    centred = np.asarray(xyz, dtype=np.float64) - np.asarray(xyz, dtype=np.float64).mean(axis=0)
    a, e = np.radians(azimuth), np.radians(elevation)
    u = centred[:, 0] * np.cos(a) + centred[:, 1] * np.sin(a)
    v = -centred[:, 0] * np.sin(a) + centred[:, 1] * np.cos(a)
    return u.astype(np.float32), (centred[:, 2] * np.cos(e) - v * np.sin(e)).astype(np.float32)
