"""The map's data: a reduce_dimensions run as the map page and its server read it.

Held in memory per object: its map coordinates (float32: 8 bytes in 2-D, 12 in 3-D) and a sampling
priority (4 bytes). Everything else is read for just the rows a request needs: ids from the map table,
rows of ids through its id index, metadata (the infer group's primary dataset and every catalog joined
to it) from the infer data, outlier scores from their table, images from the dataset. Whole-map passes
(density, colour range) go a chunk at a time. So a map of 10M objects holds ~120 MB, whatever the
size of its catalogs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.errors import ConfigError
from hyrax.plugins import did_you_mean

logger = logging.getLogger(__name__)

SOURCE_FILE = "source.toml"
SCORE = "outlier_score"
#: Columns of a ranking from labels (h.rank()), shown when the infer run has one.
RANKED = ("relevance", "combined")
#: The map's own columns, as the page's data, the live server's answers and the DataFrames name them:
#: namespaced, so that a catalog's columns (a redshift ``z``, pixel positions ``x`` and ``y``) keep
#: their names and values beside them. ``object_id`` is the object's id, the same in both.
OWN = {name: f"map_{name}" for name in ("x", "y", "z", "px", "py", "thumbnail", "neighbours", "colour")}
#: Rows processed at a time by whole-map passes (bounded temporaries whatever the map's size).
CHUNK = 1 << 20


def infer_run_of(reduce_run: Path) -> Path | None:
    """The inference run a reduce_dimensions run mapped (recorded in its source.toml)."""
    made = made_from(reduce_run)
    return Path(made["infer_run"]) if made else None


def made_from(reduce_run: Path) -> dict | None:
    """What a reduce_dimensions run mapped: ``infer_run``, and (since issue 15) the ``results_rows`` and
    ``results_version`` of its results table then; None when it does not say."""
    import tomllib

    path = Path(reduce_run) / SOURCE_FILE
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def stale_map(reduce_run: Path) -> str | None:
    """Why a map no longer matches the inference results it was made from, or None when it does (or
    does not say what it was made from)."""
    from hyrax.results.store import moved_on, table_path

    made = made_from(reduce_run) or {}
    if "results_version" not in made or not table_path(made["infer_run"]).exists():
        return None
    changed = moved_on(made, made["infer_run"])
    if not changed:
        return None
    return (
        f"the map {reduce_run} was made from another version of the results of {made['infer_run']} "
        f"({', '.join(changed)}): run `hyrax reduce_dimensions` again for a map of them as they are"
    )


def infer_provider_of(infer_run: Path):
    """The infer group's provider as the run saw it (from its runtime_config.toml), or None."""
    from hyrax.config import ConfigManager
    from hyrax.datasets.provider import DataProvider

    try:
        return DataProvider(ConfigManager(infer_run / "runtime_config.toml").config, "infer")
    except Exception as error:  # maps and rankings still work without images and metadata
        logger.warning(
            "no images or metadata: the infer data of %s could not be opened (%s)", infer_run, error
        )
        return None


def priorities(count: int, seed: int = 0) -> np.ndarray:
    """A fixed pseudo-random uint32 per row: the map draws, in any view, the rows of lowest priority, so
    a point shown at one zoom stays shown when zooming in."""
    out = np.empty(count, dtype=np.uint32)
    for start in range(
        0, count, 2**20
    ):  # a block at a time: 8-byte temporaries of every row were 24 B/object
        mixed = np.arange(start, min(count, start + 2**20), dtype=np.uint64) + np.uint64(seed)
        mixed *= np.uint64(0x9E3779B97F4A7C15)
        mixed ^= mixed >> np.uint64(29)
        mixed *= np.uint64(0xBF58476D1CE4E5B9)
        mixed ^= mixed >> np.uint64(32)
        out[start : start + len(mixed)] = mixed
    return out


class MapSource:
    """A reduce_dimensions run: coordinates held, the rest read by row (see the module documentation).

    Args:
        config: the Hyrax config.
        reduce_run: the reduce_dimensions run directory.
        coordinates: False to hold none (``x``, ``y``, ``z`` and ``priority`` are None): for a reader of
            ids, metadata and images by row that streams the map itself (the atlas).
    """

    def __init__(self, config: Mapping, reduce_run: Path, coordinates: bool = True):
        from hyrax.results.store import ResultDataset

        self.config, self.reduce_run = config, Path(reduce_run)
        self.table = ResultDataset(config, self.reduce_run)
        self.total = len(self.table)
        self.x = self.y = self.z = self.priority = None
        if coordinates:
            self._read_coordinates()
        self.infer_run = infer_run_of(self.reduce_run)
        stale = stale_map(self.reduce_run)
        if stale:
            logger.warning("%s (images and metadata are found by object id).", stale[0].upper() + stale[1:])
        self._provider = None
        self._aligned: bool | None = None
        self._stale_told: str | None = None
        self._picture_plan = None
        self._scales: dict[tuple[str, str], object] = {}  # colour scales chosen (a pass over the map each)

    def _read_coordinates(self) -> None:
        from hyrax.progress import Progress

        dims = int(np.prod(self.table.shape)) if self.table.shape else 1
        coordinates = np.empty((min(dims, 3), self.total), dtype=np.float32)
        start = 0
        with Progress("map: reading coordinates", total=self.total) as progress:
            for _, batch in self.table.iter_batches(262_144):
                batch = batch.reshape(len(batch), -1)
                coordinates[:, start : start + len(batch)] = batch[:, : len(coordinates)].T
                start += len(batch)
                progress.update(len(batch))
        self.x, self.y = (
            coordinates[0],
            coordinates[1] if len(coordinates) > 1 else np.zeros(self.total, np.float32),
        )
        self.z = coordinates[2] if len(coordinates) > 2 else None
        self.priority = priorities(self.total)

    # -- what there is ---------------------------------------------------------------------------------
    def provider(self):
        """The infer group's data (images, metadata), opened once; None when it cannot be."""
        if self._provider is None:
            self._provider = (
                infer_provider_of(self.infer_run) if self.infer_run is not None else None
            ) or False
        return self._provider or None

    def has_scores(self) -> bool:
        """Whether the infer run has outlier scores that describe its results as they are (stale scores
        are not shown: a warning says to score again)."""
        from hyrax.vector_db.outliers import scores_path, stale_scores

        if self.infer_run is None or not scores_path(self.infer_run).exists():
            return False
        stale = stale_map(self.reduce_run) or stale_scores(self.infer_run)
        if stale and stale != self._stale_told:
            logger.warning("The map does not show outlier scores: %s.", stale)
            self._stale_told = stale
        return stale is None

    def labels(self):
        """The labels given so far (:class:`~hyrax.discovery.labels.LabelBook` of the results directory)."""
        from hyrax.discovery.labels import LabelBook, labels_path

        return LabelBook(labels_path(self.config))

    def has_ranking(self) -> bool:
        """Whether the infer run has a ranking from labels (``h.rank()``) of its results as they are."""
        from hyrax.discovery.rank import ranking_metadata
        from hyrax.results.store import moved_on

        if self.infer_run is None:
            return False
        made = ranking_metadata(self.infer_run)
        return made is not None and not moved_on(made, self.infer_run)

    def columns(self) -> list[str]:
        """Names of the metadata columns (and ``outlier_score`` when the run was scored, ``relevance`` and
        ``combined`` when it was ranked from labels)."""
        metadata = self.metadata(np.zeros(1, dtype=np.int64)) if self.total else {}
        found = [f"catalog.{k}" if k in OWN.values() else k for k in metadata]  # as columns_of names them
        return found + ([SCORE] if self.has_scores() else []) + (list(RANKED) if self.has_ranking() else [])

    def check_color(self, color: str | None) -> str | None:
        """``color`` if it is a column of the map, else an error listing them."""
        if color is None:
            return None
        columns = self.columns()
        if color in columns:
            return color
        base = color.rsplit("_", 1)[0]
        if "_" in color and base in columns:  # the published Hyrax's "<column>_<dataset name>"
            import warnings

            warnings.warn(
                f'visualize.color_column = "{color}" is the published Hyrax\'s name of column "{base}": '
                f'write "{base}".',
                FutureWarning,
                stacklevel=3,
            )
            return base
        raise ConfigError(
            f'visualize.color_column = "{color}" is not a column of the map.{did_you_mean(color, columns)} '
            f"Columns: {', '.join(columns) or '(none: the data has no metadata)'}."
        )

    # -- by row --------------------------------------------------------------------------------------
    def ids(self, rows: np.ndarray) -> np.ndarray:
        """Object ids of map rows (str)."""
        return self.table.ids_at(rows)

    def rows_of(self, object_ids) -> np.ndarray:
        """Map rows of object ids (-1 where not on the map), through the map table's id index."""
        return self.table.rows_of(object_ids)

    def coordinates(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        parts = [self.x[rows], self.y[rows]] + ([self.z[rows]] if self.z is not None else [])
        return np.stack(parts, axis=1)

    def dataset_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the infer data for map rows (-1 where the object is not there). When the inference
        run wrote one row per object in dataset order (no object skipped, no split file), map row r is
        dataset row r; otherwise each is found by its id."""
        rows = np.asarray(rows, dtype=np.int64)
        provider = self.provider()
        if provider is None:
            return np.full(len(rows), -1, dtype=np.int64)
        if self._aligned is None:
            self._aligned = self._check_aligned(provider)
        if self._aligned:
            return rows
        return provider.rows_of(self.ids(rows), hints=rows)

    def _check_aligned(self, provider) -> bool:
        from hyrax.results.run_dir import RunDir

        status = RunDir(self.infer_run).status
        split = provider.config.get("split", {}).get("infer")
        if status.get("skipped", 1) != 0 or isinstance(split, str) or self.total > len(provider):
            return False
        probe = np.unique(
            np.concatenate([[0, self.total - 1], np.random.default_rng(0).integers(0, self.total, 64)])
        )
        return bool((self.ids(probe) == provider.ids_at(probe)).all())

    def metadata(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Metadata columns of map rows: the infer data's (primary dataset and joined catalogs) and the
        outlier score."""
        rows = np.asarray(rows, dtype=np.int64)
        found: dict[str, np.ndarray] = {}
        provider = self.provider()
        if provider is not None and len(rows):
            dataset_rows = self.dataset_rows(rows)
            missing = dataset_rows < 0
            for name, values in provider.metadata_rows(np.maximum(dataset_rows, 0)).items():
                if missing.any():
                    values = np.where(missing, np.nan, values) if values.dtype.kind in "biuf" else values
                found[name] = values
        return found

    def scores(self, rows: np.ndarray) -> np.ndarray | None:
        """Outlier scores of map rows (the infer results' rows), or None when the run was not scored."""
        if not self.has_scores():
            return None
        from hyrax.vector_db.outliers import read_scores

        return read_scores(self.infer_run, np.asarray(rows, dtype=np.int64))

    def columns_of(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every column the map shows for these rows (metadata, then the outlier score). A catalog
        column named like one of the map's own (``map_x``...: :data:`OWN`) is shown as
        ``catalog.<name>``."""
        found = {f"catalog.{k}" if k in OWN.values() else k: v for k, v in self.metadata(rows).items()}
        scores = self.scores(rows)
        if scores is not None:
            found[SCORE] = scores
        if self.has_ranking():
            from hyrax.discovery.rank import read_ranking

            ranked = read_ranking(self.infer_run, np.asarray(rows, dtype=np.int64))
            found.update({name: ranked[name] for name in RANKED})
        return found

    def image(self, row: int, stretch: str, band: int | None) -> np.ndarray:
        """Map row ``row``'s picture (RGB uint8), from its dataset; raises when there is none."""
        provider = self.provider()
        if provider is None:
            raise LookupError("the infer data could not be opened")
        dataset_row = int(self.dataset_rows(np.asarray([row]))[0])
        if dataset_row < 0:
            raise LookupError(f"map row {row} is not in the infer group's primary dataset")
        dataset = provider.datasets[provider.primary]
        if self._picture_plan is None:  # decided once: thumbnails are read one at a time
            self._picture_plan = picture_plan(dataset)
        return thumbnail_rgb(dataset, dataset_row, stretch, band, self._picture_plan)

    # -- whole-map passes, a chunk at a time -----------------------------------------------------------
    def inside_mask(self, x0: float, x1: float, y0: float, y1: float, start: int, stop: int) -> np.ndarray:
        x, y = self.x[start:stop], self.y[start:stop]
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)

    def count_inside(self, x0: float, x1: float, y0: float, y1: float) -> int:
        return sum(
            int(self.inside_mask(x0, x1, y0, y1, start, start + CHUNK).sum())
            for start in range(0, self.total, CHUNK)
        )

    def inside(self, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        """Every row inside the box (int64)."""
        parts = [
            start + np.flatnonzero(self.inside_mask(x0, x1, y0, y1, start, start + CHUNK))
            for start in range(0, self.total, CHUNK)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)

    def sample(self, x0: float, x1: float, y0: float, y1: float, limit: int) -> tuple[np.ndarray, int]:
        """(the rows drawn in a box: all of them when at most ``limit``, else the ``limit`` of lowest
        priority; how many are inside). Temporaries stay a chunk's size."""
        inside = self.count_inside(x0, x1, y0, y1)
        if inside <= limit:
            return self.inside(x0, x1, y0, y1), inside
        # Keep rows whose priority falls under a threshold that leaves ~1.5x the limit, then the lowest.
        threshold = np.uint64(min(2**32 - 1, int(1.5 * limit / inside * 2**32) + 1))
        kept = []
        for start in range(0, self.total, CHUNK):
            mask = self.inside_mask(x0, x1, y0, y1, start, start + CHUNK)
            mask &= self.priority[start : start + CHUNK] < threshold
            kept.append(start + np.flatnonzero(mask))
        rows = np.concatenate(kept).astype(np.int64)
        if len(rows) > limit:
            rows = np.sort(rows[np.argpartition(self.priority[rows], limit - 1)[:limit]])
        elif len(rows) < limit:  # an unlucky threshold: take every row inside, then the lowest
            rows = self.inside(x0, x1, y0, y1)
            rows = np.sort(rows[np.argpartition(self.priority[rows], limit - 1)[:limit]])
        return rows, inside

    def density(self, extent: tuple[float, float, float, float], bins: int) -> np.ndarray:
        """Counts of every object on a bins x bins grid over ``extent`` (x0, y0, x1, y1); row i is the
        i-th y bin from below."""
        x0, y0, x1, y1 = extent
        counts = np.zeros(bins * bins, dtype=np.int64)
        sx, sy = bins / max(x1 - x0, 1e-30), bins / max(y1 - y0, 1e-30)
        for start in range(0, self.total, CHUNK):
            mask = self.inside_mask(x0, x1, y0, y1, start, start + CHUNK)
            ix = np.minimum(((self.x[start : start + CHUNK][mask] - x0) * sx).astype(np.int64), bins - 1)
            iy = np.minimum(((self.y[start : start + CHUNK][mask] - y0) * sy).astype(np.int64), bins - 1)
            counts += np.bincount(iy * bins + ix, minlength=bins * bins)
        return counts.reshape(bins, bins)

    def extent(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of every object, padded by 2%."""
        if not self.total:
            return (0.0, 0.0, 1.0, 1.0)
        low = np.array([self.x.min(), self.y.min()], dtype=np.float64)
        high = np.array([self.x.max(), self.y.max()], dtype=np.float64)
        pad = np.maximum((high - low) * 0.02, 1e-6)
        return (
            float(low[0] - pad[0]),
            float(low[1] - pad[1]),
            float(high[0] + pad[0]),
            float(high[1] + pad[1]),
        )

    def colour_scale(self, column: str | None, how: str = "auto"):
        """How ``column`` colours the map (:func:`hyrax.visualize.colours.choose`, from every object or,
        past :data:`~hyrax.visualize.colours.SAMPLE` of them, the seeded sample the map draws first; a
        linear or log scale spans every object's range), or None without a column."""
        import dataclasses

        from hyrax.visualize.colours import SAMPLE, choose

        if column is None:
            return None
        if (column, how) in self._scales:
            return self._scales[column, how]
        x0, y0, x1, y1 = self.extent()
        rows, _ = self.sample(x0, x1, y0, y1, SAMPLE)
        scale = choose(column, self.columns_of(rows)[column], how)
        if scale.kind in ("linear", "log") and len(rows) < self.total:
            low, high = self.color_range(column) or (scale.low, scale.high)
            low = low if scale.kind == "linear" or low > 0 else scale.low
            scale = dataclasses.replace(scale, low=low, high=max(high, low))
        self._scales[column, how] = scale
        return scale

    def color_range(self, column: str | None) -> tuple[float, float] | None:
        """(min, max) of a numeric column over every object (read a chunk at a time), or None."""
        if column is None:
            return None
        if column == SCORE and self.has_scores():
            from hyrax.vector_db.outliers import score_range

            return score_range(self.infer_run)
        from hyrax.progress import Progress

        low, high = np.inf, -np.inf
        with Progress(f"map: range of {column}", total=self.total) as progress:
            for start in range(0, self.total, CHUNK):
                rows = np.arange(start, min(start + CHUNK, self.total))
                values = self.columns_of(rows).get(column)
                if values is None or np.asarray(values).dtype.kind not in "biuf":
                    return None
                finite = np.asarray(values, dtype=np.float64)
                finite = finite[np.isfinite(finite)]
                if len(finite):
                    low, high = min(low, finite.min()), max(high, finite.max())
                progress.update(len(rows))
        return (float(low), float(high)) if np.isfinite(low) else None


def picture_plan(dataset) -> tuple[str | None, Mapping | None]:
    """How a dataset's objects become thumbnails: (the field drawn, None for its ``display(idx)``;
    its light-curve settings or None). The field is ``image`` when the dataset has one, else its
    resampled light curve (:mod:`hyrax.visualize.curves`)."""
    from hyrax.visualize.curves import lightcurve_field, lightcurve_settings

    settings = lightcurve_settings(dataset)
    if callable(getattr(dataset, "display", None)):
        return None, settings
    curves = lightcurve_field(settings)
    fields = dataset.fields() if callable(getattr(dataset, "fields", None)) else ()
    return ("image" if "image" in fields or curves not in fields else curves), settings


def thumbnail_rgb(dataset, row: int, how: str, band: int | None, plan=None) -> np.ndarray:
    """Object ``row`` of ``dataset`` as an RGB picture (:func:`picture_plan`): an image stretched, a
    light curve drawn as curves per band."""
    from hyrax.visualize.curves import draw_lightcurve, lightcurve_field, looks_like_lightcurve
    from hyrax.visualize.stretch import to_rgb

    field, settings = plan or picture_plan(dataset)
    image = dataset.display(int(row)) if field is None else dataset.getter(field)(int(row))
    if (field is not None and field == lightcurve_field(settings)) or looks_like_lightcurve(image):
        return draw_lightcurve(image, settings)
    return to_rgb(image, how, band)
