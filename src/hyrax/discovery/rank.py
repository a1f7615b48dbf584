"""Re-ranking from labels: a relevance model learnt from the labelled latent vectors, combined with the
outlier score, so that the ranking follows what the scientist calls interesting, not only what is unusual
(the scheme of Astronomaly, Lochner & Bassett 2021: trained relevance x anomaly score).

The rule, for each object x with latent vector v:

* **relevance** r(x): a Gaussian-kernel average of the labels (1 interesting, 0 not) of the ``k`` nearest
  labelled objects, with the prior p0 = (interesting + 1) / (labelled + 2) weighing as one more
  neighbour at distance 0: r = (sum_i w_i y_i + p0) / (sum_i w_i + 1), w_i = exp(-d_i^2 / 2 l^2). The
  length scale l is the median distance of a seeded sample of objects to their 10th nearest one in the
  sample (``rank.length_scale`` sets it). Far from every label, r falls back to p0.
* **uncertainty** u(x) = 1 / (sum_i w_i + 1): 1 far from every label, towards 0 among many.
  A labelled object's relevance is its own label (the scientist said so) and its uncertainty 0.
* **anomaly** a(x): the outlier score's quantile among all objects (0 to 1), estimated from a seeded
  sample of at most 100,000 scores.
* **combined** = r x ((1 - w) + w a), w = ``rank.anomaly_weight`` (1: Astronomaly's product; 0: relevance
  alone; 0.5 by default: the unusual breaks ties among the relevant, at most a factor of two).
* **acquisition** (r + ``rank.explore`` x u) x ((1 - w) + w a): promising, and where a label teaches the
  most (uncertainty sampling). Before any label its order is the outlier ranking's.
* **coverage**: a farthest-first traversal (greedy k-centre) of the typical objects (outlier quantile at
  most 0.5) of a seeded sample of at most 20,000, starting from the labelled objects (before any label,
  from the sample's mean): the first ``COVER_PICKS`` picked get 1, then less in the order picked; the
  rest 0. These are the kinds of object no label speaks for yet.
* **suggested** next to label: ``rank.cover`` of them (rounded) by coverage, the rest by acquisition,
  labelled objects left out. Why both: a rare class that is not unusual (a tight group of ordinary
  scores) is never reached by the outlier-led acquisition alone, and without one "interesting" label
  the relevance is the prior everywhere and cannot learn; the coverage picks show the scientist one of
  each kind of object, so a first interesting label can be given to what was shown.

Every object is scored a batch at a time and the results written to ``<infer run>/lance_db/ranking.lance``
(object_id, relevance, uncertainty, combined, acquisition; results row order) with what made them
(labels version, results version, settings) in its schema metadata; the ranking and the suggestions
are read from it with a streamed top-k (no sort of every object), and recomputed only when labels,
results or settings changed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.discovery.labels import LabelBook
from hyrax.errors import ConfigError
from hyrax.progress import Progress
from hyrax.results.store import SCAN, ResultDataset, _has_versions, replace_table, table_path

logger = logging.getLogger(__name__)

COLUMNS = ("relevance", "uncertainty", "combined", "acquisition", "coverage")
SCORE_SAMPLE = 100_000
SCALE_SAMPLE = 2_000
COVER_SAMPLE = 20_000
COVER_PICKS = 256
READ_ROWS = 262_144


@dataclass(frozen=True)
class RankSettings:
    """``[rank]``: see the module documentation."""

    k: int = 10
    anomaly_weight: float = 0.5
    explore: float = 0.3
    cover: float = 0.3
    length_scale: float | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping) -> RankSettings:
        section = config["rank"]
        scale = section["length_scale"]
        settings = cls(
            k=int(section["k"]),
            anomaly_weight=float(section["anomaly_weight"]),
            explore=float(section["explore"]),
            cover=float(section["cover"]),
            length_scale=None if scale is False else float(scale),
            seed=int(config["data_set"]["seed"] or 0),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.k < 1:
            raise ConfigError(f"rank.k must be a whole number >= 1; got {self.k}.")
        if not 0 <= self.anomaly_weight <= 1:
            raise ConfigError(f"rank.anomaly_weight must be between 0 and 1; got {self.anomaly_weight}.")
        if self.explore < 0:
            raise ConfigError(f"rank.explore must be >= 0; got {self.explore}.")
        if not 0 <= self.cover <= 1:
            raise ConfigError(f"rank.cover must be between 0 and 1; got {self.cover}.")
        if self.length_scale is not None and not self.length_scale > 0:
            raise ConfigError(
                f"rank.length_scale must be > 0 or false (chosen from the data); got {self.length_scale}."
            )


def ranking_path(run: Path) -> Path:
    return table_path(run).with_name("ranking.lance")


def _made_from(run: Path, book: LabelBook, settings: RankSettings) -> dict[str, str]:
    from hyrax.results.store import results_record
    from hyrax.vector_db.outliers import scores_metadata

    outliers = scores_metadata(run) or {}
    made = {key: str(value) for key, value in results_record(run).items()}
    made |= {f"setting_{key}": str(value) for key, value in asdict(settings).items()}
    made |= {"labels_version": str(book.version()), "labels_path": str(book.path)}
    made |= {"outliers_" + key: outliers.get(key, "") for key in ("method", "k", "results_version")}
    return made


def ranking_metadata(run: Path) -> dict[str, str] | None:
    import lance

    path = ranking_path(run)
    if not _has_versions(path):
        return None
    metadata = lance.dataset(str(path)).schema.metadata or {}
    return {key.decode(): value.decode() for key, value in metadata.items()}


def update_ranking(run: Path, book: LabelBook, settings: RankSettings) -> dict[str, str]:
    """Score every object of ``run`` from the labels in ``book`` (the outlier scores must exist); reuse the
    ranking table when nothing it was made from changed. Returns its metadata."""
    with _ranking_lock(run):  # one writer of a run's ranking (the notebook and the map's server, say)
        made = _made_from(run, book, settings)
        current = ranking_metadata(run)
        if current is not None and all(current.get(key) == value for key, value in made.items()):
            return current
        results = ResultDataset(data_location=run)
        model = Relevance.fit(results, book, settings)
        made |= model.describe()
        quantiles = _score_quantiles(run, settings.seed)
        cover = coverage_rows(run, results, model, quantiles, settings.seed)
        _write(run, results, model, quantiles, cover, settings, made)
        return made


def _ranking_lock(run: Path):
    """The run's ranking lock (an OS lock: it dies with the process); a second ranker waits for it."""
    from hyrax import locks
    from hyrax.errors import HyraxError
    from hyrax.progress import Waiting

    return locks.exclusive(
        table_path(run).parent / "ranking.lock",
        "rank",
        lambda holder: HyraxError(f"{holder} is ranking {run}; wait for it, then rank again."),
        lambda holder: Waiting(f"{holder} is ranking {run}: waiting for it"),
    )


# ------------------------------------------------------------------------------------- the model


@dataclass
class Relevance:
    """The labelled vectors and their labels, the prior and the kernel's length scale."""

    vectors: np.ndarray
    labels: np.ndarray
    rows: np.ndarray  # results rows of the labelled objects, sorted
    prior: float
    length_scale: float
    k: int
    ignored: int = 0
    _index: Any = field(default=None, init=False, repr=False)  # faiss index of the labelled vectors

    @classmethod
    def fit(cls, results: ResultDataset, book: LabelBook, settings: RankSettings) -> Relevance:
        ids, labels = book.labelled()
        rows = results.rows_of(ids) if len(ids) else np.empty(0, dtype=np.int64)
        present = rows >= 0
        order = np.argsort(rows[present])
        rows, labels = rows[present][order], labels[present][order]
        vectors = (
            results.take(rows)[1].reshape(len(rows), -1).astype(np.float32)
            if len(rows)
            else np.empty((0, 1), np.float32)
        )
        prior = (float(labels.sum()) + 1) / (len(labels) + 2)
        scale = settings.length_scale or _length_scale(results, settings.seed)
        ignored = int((~present).sum())
        return cls(vectors, labels.astype(np.float32), rows, prior, scale, settings.k, ignored)

    def describe(self) -> dict[str, str]:
        return {
            "labelled": str(len(self.labels)),
            "interesting": str(int(self.labels.sum())),
            "labels_not_in_run": str(self.ignored),
            "prior": f"{self.prior:.6g}",
            "length_scale_used": f"{self.length_scale:.6g}",
        }

    def predict(self, vectors: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(relevance, uncertainty) of the vectors of results rows ``start``, ``start + 1``, ..."""
        relevance, uncertainty = self._kernel(vectors)
        low, high = np.searchsorted(self.rows, [start, start + len(vectors)])
        relevance[self.rows[low:high] - start] = self.labels[low:high]
        uncertainty[self.rows[low:high] - start] = 0
        return relevance, uncertainty

    def _kernel(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = len(vectors)
        if not len(self.labels):
            return np.full(count, self.prior, np.float32), np.ones(count, np.float32)
        import faiss

        if self._index is None:
            self._index = faiss.IndexFlatL2(self.vectors.shape[1])
            self._index.add(self.vectors)
        squared, found = self._index.search(
            np.ascontiguousarray(vectors, np.float32), min(self.k, len(self.labels))
        )
        weights = np.exp(-np.maximum(squared, 0) / (2 * self.length_scale**2))
        weights[found < 0] = 0
        total = weights.sum(axis=1) + 1.0
        relevance = ((weights * self.labels[np.maximum(found, 0)]).sum(axis=1) + self.prior) / total
        return relevance.astype(np.float32), (1.0 / total).astype(np.float32)


def _length_scale(results: ResultDataset, seed: int) -> float:
    """Median distance of a seeded sample of objects to their 10th nearest one within the sample."""
    import faiss

    from hyrax.compute import sample_rows

    rows = sample_rows(len(results), SCALE_SAMPLE, np.random.default_rng(seed))
    sample = results.take(rows)[1].reshape(len(rows), -1).astype(np.float32)
    index = faiss.IndexFlatL2(sample.shape[1])
    index.add(sample)
    k = min(11, len(sample))
    squared, _ = index.search(sample, k)
    scale = float(np.median(np.sqrt(np.maximum(squared[:, k - 1], 0))))
    return scale if scale > 0 else 1.0


def _score_quantiles(run: Path, seed: int) -> np.ndarray:
    """Sorted seeded sample of at most SCORE_SAMPLE outlier scores (their quantiles)."""
    from hyrax.vector_db.outliers import current_scores_table

    table = current_scores_table(run)
    count = table.count_rows()
    keep = min(1.0, SCORE_SAMPLE / max(count, 1))
    rng = np.random.default_rng(seed)
    parts = []
    for batch in table.to_batches(columns=["outlier_score"], batch_size=READ_ROWS, **SCAN):
        values = batch.column(0).to_numpy()
        parts.append(values[rng.random(len(values)) < keep] if keep < 1 else values)
    sample = np.sort(np.concatenate(parts)) if parts else np.zeros(1, np.float32)
    return sample[np.isfinite(sample)] if np.isfinite(sample).any() else np.zeros(1, np.float32)


def coverage_rows(run: Path, results: ResultDataset, model: Relevance, quantiles, seed: int) -> np.ndarray:
    """Rows of up to COVER_PICKS typical unlabelled objects in the order a farthest-first traversal of a
    seeded sample picks them, starting from the labelled objects (the sample's mean when none).

    Typical: an outlier quantile of at most 0.5 (the outliers are what the acquisition shows first).
    Each pick is the sampled object farthest from every label and every earlier pick: a spread of the
    kinds of object no label speaks for yet."""
    from hyrax.compute import sample_rows
    from hyrax.vector_db.outliers import _scores_table

    rows = sample_rows(len(results), COVER_SAMPLE, np.random.default_rng(seed + 1))
    rows = rows[~np.isin(rows, model.rows)]
    outlier = _scores_table(run).take(rows, columns=["outlier_score"]).column(0).to_numpy()
    rows = rows[np.searchsorted(quantiles, outlier, side="right") <= 0.5 * len(quantiles)]
    if not len(rows):
        return np.empty(0, np.int64)
    vectors = results.take(rows)[1].reshape(len(rows), -1).astype(np.float32)
    if len(model.labels):
        import faiss

        index = faiss.IndexFlatL2(model.vectors.shape[1])
        index.add(model.vectors)
        nearest = np.sqrt(np.maximum(index.search(vectors, 1)[0][:, 0], 0))
    else:
        nearest = np.linalg.norm(vectors - vectors.mean(axis=0), axis=1)
    picks = []
    for _ in range(min(COVER_PICKS, len(rows))):
        pick = int(np.argmax(nearest))
        picks.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(vectors - vectors[pick], axis=1))
        nearest[pick] = -1.0
    return rows[np.asarray(picks, np.int64)]


# ------------------------------------------------------------------------------------- writing


def _write(run, results, model, quantiles, cover, settings, made) -> None:
    """Stream every object's scores into the ranking table in one Lance commit."""

    import pyarrow as pa

    from hyrax.datasets.ids import arrow_strings
    from hyrax.vector_db.outliers import _scores_table

    path = ranking_path(run)
    schema = pa.schema(
        [("object_id", pa.string())] + [(name, pa.float32()) for name in COLUMNS],
        metadata={key.encode(): value.encode() for key, value in made.items()},
    )
    scores = _scores_table(run)
    weight = settings.anomaly_weight
    by_row = np.argsort(cover)  # the coverage picks by row: 1 for the first picked, down to 1 / picks
    cover_rows, cover_values = cover[by_row], (1 - by_row / max(len(cover), 1)).astype(np.float32)

    def batches():
        start = 0
        with Progress("ranking", len(results)) as progress:
            for ids, vectors in results.iter_batches(16384):
                vectors = vectors.reshape(len(ids), -1).astype(np.float32)
                outlier = scores.take(np.arange(start, start + len(ids)), columns=["outlier_score"])
                anomaly = np.searchsorted(quantiles, outlier.column(0).to_numpy(), side="right") / len(
                    quantiles
                )
                factor = (1 - weight) + weight * anomaly.astype(np.float32)
                relevance, uncertainty = model.predict(vectors, start)
                coverage = np.zeros(len(ids), np.float32)
                low, high = np.searchsorted(cover_rows, [start, start + len(ids)])
                coverage[cover_rows[low:high] - start] = cover_values[low:high]
                arrays = [
                    relevance,
                    uncertainty,
                    relevance * factor,
                    (relevance + settings.explore * uncertainty) * factor,
                    coverage,
                ]
                yield pa.RecordBatch.from_arrays(
                    [arrow_strings(ids)] + [pa.array(np.asarray(a, np.float32)) for a in arrays],
                    schema=schema,
                )
                start += len(ids)
                progress.update(len(ids))

    replace_table(path, schema, batches(), "the ranking")


# ------------------------------------------------------------------------------------- reading


def top_rows(
    run: Path, column: str, top: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, values) of the ``top`` highest values of a ranking column, descending (ties in row order),
    streamed; rows in ``exclude`` (sorted) are passed over."""
    import lance

    table = lance.dataset(str(ranking_path(run)))
    rows = np.empty(0, dtype=np.int64)
    values = np.empty(0, dtype=np.float32)
    start = 0
    for batch in table.to_batches(columns=[column], batch_size=READ_ROWS, **SCAN):
        chunk = batch.column(0).to_numpy()
        here = np.arange(start, start + len(chunk))
        start += len(chunk)
        if exclude is not None and len(exclude):
            keep = ~np.isin(here, exclude, assume_unique=True)
            here, chunk = here[keep], chunk[keep]
        if len(chunk) > top:  # only this batch's leaders can enter the overall top
            part = np.argpartition(-chunk, top - 1)[:top]
            here, chunk = here[part], chunk[part]
        rows, values = np.concatenate([rows, here]), np.concatenate([values, chunk])
        keep = np.lexsort((rows, -values))[:top]
        rows, values = rows[keep], values[keep]
    return rows, values


def read_ranking(run: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The ranking columns (and object_id) of these results rows."""
    import lance

    found = lance.dataset(str(ranking_path(run))).take(np.asarray(rows, dtype=np.int64))
    out = {name: found.column(name).to_numpy() for name in COLUMNS}
    out["object_id"] = found.column("object_id").to_numpy(zero_copy_only=False).astype(str)
    return out
