"""The distance of every object to its k-th nearest neighbour, for outlier scores at survey scale.

Small tables are searched exactly in memory. Larger ones never hold all the vectors: a k-means coarse
quantizer cuts them into ``nlist`` lists of about :data:`OBJECTS_PER_LIST` objects, the vectors are
written grouped by list into a temporary file, and each object is compared exactly with every object
of the ``nprobe`` lists whose centroids are nearest to it. ``nprobe`` is chosen on a sample, whose exact
neighbours are found on the way, as the smallest that scores :data:`TARGET_RECALL` of the sample within
1% of its exact score. A missed neighbour only raises a score, so the objects scored highest are then
searched again in more lists (:data:`REFINE_STEPS`): the top of the ranking is what a user reads. Memory:
~12 bytes an object plus bounded buffers.

That works while an object's neighbours lie in a few lists: on data of low intrinsic dimension (latent
vectors near a manifold). In high intrinsic dimension (say 64-d isotropic clusters) a partition cuts
every neighbourhood: the share of the data an object must be compared with stays about constant (~3% at
200,000 and at 1M objects for 64-d Gaussian clusters), so the cost grows as N^2. When the sample shows
that the lists would need more than :data:`GRAPH_ABOVE_PROBES` probes (or cannot reach the target at
all), the search is made in a graph instead (:func:`graph_scores`: faiss HNSW over the vectors, whose
cost grows about as N log N), its effort chosen on the same sample and to the same target. The graph
holds the vectors in memory: ~4 x dimension + 8 x :data:`GRAPH_LINKS` + ~40 bytes an object (~550 at
64-d; the vectors twice while it is built: ~800), so it is used only where the memory allows. ``outliers.nlist`` or ``outliers.nprobe`` set by
hand always keep the lists.

A graph over millions of objects of high intrinsic dimension is slow to build on a few cores (64-d
isotropic clusters, 10M objects on 2 cores: not built after 70 minutes). ``outliers.time_budget_minutes``
bounds the search: the cost of each way is predicted on the machine (the lists from a block of objects
searched at two numbers of probes; the graph from graphs of up to 100,000 and 400,000 objects built and
searched, the growth of the cost per object between them extrapolated), and when the way that meets the
target would take longer than the budget, the lists are searched with the most probes the budget allows. The share of the sample scored within 1% at that number of probes is said in a warning and
kept in the scores' metadata (``estimated_recall``), so the trade is never silent.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hyrax.compute import knn_on_any_threads
from hyrax.errors import DataError, ResultsWriteError
from hyrax.progress import Progress, Waiting
from hyrax.results.store import ResultDataset

logger = logging.getLogger(__name__)

#: Up to this many objects and bytes of vectors (and when neither ``outliers.nlist`` nor
#: ``outliers.nprobe`` is set), exact neighbours are found in memory: N^2 distances, ~10 s at 50,000.
EXACT_LIMIT = 50_000
EXACT_BYTES = 256 * 2**20
#: The automatic ``nlist``: about this many objects per list (search costs ~nprobe x this per object,
#: assignment ~nlist per object; 1,000 balances them between 1M and 10M objects).
OBJECTS_PER_LIST = 1_000
#: The automatic ``nprobe`` is the smallest of PROBES that scores this share of a sample within 1%.
TARGET_RECALL = 0.95
PROBES = (4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64)
CALIBRATION_SAMPLE = 1_000
#: The lists give way to a graph when the sample needs more than this many probes (~32,000 objects
#: compared per object: about what a graph search and insertion cost at M = 32).
GRAPH_ABOVE_PROBES = 32
#: The graph: faiss HNSW with this many links per object, built with this effort; the search effort is
#: the smallest of GRAPH_EFFORTS that scores TARGET_RECALL of the sample within 1%.
GRAPH_LINKS = 32
GRAPH_BUILD_EFFORT = 40
GRAPH_EFFORTS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
#: ... and only when it needs at most this share of the machine's memory.
GRAPH_MEMORY_SHARE = 0.5
#: The graph's cost is predicted from graphs of a quarter of this many objects and of all of them, built
#: and searched by this many queries (~a minute at 64-d on 2 cores: only with a time budget).
GRAPH_PILOT = 400_000
GRAPH_PILOT_QUERIES = 10_000
#: Then the objects scored highest are searched again in more lists, their scores lowered where that finds
#: nearer neighbours: at each step (share of the objects, at least this many, times the first nprobe),
#: the top by the scores as the step before left them. A missed neighbour only ever raises a score, so
#: the objects a missed neighbour pushed into the top are the ones this corrects: on 10M real latent
#: vectors at nprobe 5, 92% of scores were within 1% but only 32% of the exact top 1% were in the scores'
#: top 1%; with the first step alone (the top 5% at nprobe 20), 43%; with both (then the top 1% at
#: nprobe 80), 88%, the scoring taking 624 s against 549 s without them (benchmarks/outliers_shapes.py).
REFINE_STEPS: tuple[tuple[float, int, int], ...] = ((0.05, 1_000, 4), (0.01, 200, 16))
#: k-means is trained on this many objects per list (faiss asks for at least 39).
TRAIN_PER_LIST = 40
#: Bytes of vectors read or searched at once; the cache of lists read back from the temporary file.
BATCH_BYTES = 16 * 2**20
CACHE_BYTES = 64 * 2**20


def knn_scores(
    results: ResultDataset,
    k: int,
    nlist: int | None,
    nprobe: int | None,
    seed: int,
    directory: Path,
    client=None,
    time_budget: float | None = None,
) -> tuple[np.ndarray, dict[str, str]]:
    """Distance of every object to its k-th nearest neighbour other than itself (float32, row order),
    and how it was found. ``client``: a ``distributed.Client`` whose workers search the lists (or the
    graph) a shard at a time (:mod:`hyrax.vector_db.outlier_shards`), with the same scores; the exact
    search of a small table stays here. ``time_budget``: seconds the search may take (None: as long as
    it needs to reach the target; see the module's docstring)."""
    count = len(results)
    k = max(0, min(int(k), count - 1))
    row_bytes = 4 * max(1, int(np.prod(results.shape or (1,))))
    if nlist is None and nprobe is None and count <= EXACT_LIMIT and count * row_bytes <= EXACT_BYTES:
        return _exact_scores(results, k), {"search": "exact", "nlist": "1", "nprobe": "1"}
    automatic = nlist is None and nprobe is None
    nlist = int(min(nlist or max(1, round(count / OBJECTS_PER_LIST)), count))
    with PartitionedSearch(results, k, nlist, seed, directory) as search:
        chosen, recall = search.choose_nprobe(nprobe)
        use_graph = False
        if automatic and (chosen > GRAPH_ABOVE_PROBES or recall < TARGET_RECALL):
            fits, need = _graph_fits(count, search.dimension)
            if fits:
                logger.info(
                    "outlier scores: %d of %d lists would score %.1f%% of a sample within 1%% (high intrinsic "
                    "dimension): a graph instead (%.1f GB in memory)",
                    chosen, nlist, 100 * recall, need / 1e9,
                )  # fmt: skip
                use_graph = True
            else:
                logger.warning(
                    "outlier scores: the lists reach %.1f%% of a sample within 1%% of exact at nprobe %d; a graph "
                    "search would need %.1f GB of memory, more than %.0f%% of this machine's: keeping the lists",
                    100 * recall, chosen, need / 1e9, 100 * GRAPH_MEMORY_SHARE,
                )  # fmt: skip
        budget_note = {}
        if automatic and time_budget is not None:
            planned = _graph_seconds(results, k) if use_graph else None
            per_object = None
            if planned is None or planned > time_budget:
                search.group(shared=client is not None)
                per_object = search.time_lists()
                if planned is None:
                    planned = count * (per_object[0] + per_object[1] * chosen)
            if planned > time_budget:

                def lists_take(probes: int) -> float:
                    return count * (per_object[0] + per_object[1] * probes)

                fitting = [p for p in search.recalls if lists_take(p) <= time_budget]
                within = max(fitting) if fitting else min(search.recalls)
                logger.warning(
                    "outlier scores: reaching %.0f%% of a sample within 1%% of exact would take about %s (%s) on "
                    "this machine, over outliers.time_budget_minutes = %g: searching %d lists of %d instead "
                    "(about %s), which score %.1f%% of the sample within 1%%. Raise the budget (or set it to "
                    "false) for closer scores",
                    100 * TARGET_RECALL, _duration(planned), "a graph" if use_graph else f"{chosen} lists",
                    time_budget / 60, within, nlist, _duration(lists_take(within)), 100 * search.recalls[within],
                )  # fmt: skip
                use_graph, chosen, recall = False, within, search.recalls[within]
            budget_note = {"time_budget_s": f"{time_budget:g}", "predicted_s": f"{planned:.4g}"}
        if use_graph:
            search.labels = None  # 4 B an object the graph does not need
            scores, how = graph_scores(
                results, k, search.sample, search.sample_rows, search.sample_distances[:, k], client
            )
            return scores, {**how, **budget_note}
        if automatic and recall < TARGET_RECALL and not budget_note:
            logger.warning(
                "outlier scores: %d lists of %d give a sample only %.1f%% of scores within 1%% of exact; "
                "set outliers.nprobe higher (slower) if that is not enough",
                chosen, nlist, 100 * recall,
            )  # fmt: skip
        if search.descriptor is None:
            search.group(shared=client is not None)
        scores = search.scores(chosen, client)
        # The top searched wider, unless nprobe was set by hand or a time budget cut the probes.
        refined = search.refine(scores, chosen) if nprobe is None and not budget_note else None
    how = {
        "search": "partitioned",
        "nlist": str(nlist),
        "nprobe": str(chosen),
        "estimated_recall": f"{recall:.3f}",
        **(
            {"refined": ", then ".join(f"{top} objects at nprobe {wider}" for top, wider in refined)}
            if refined
            else {}
        ),
        **budget_note,
    }
    return scores, how


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def _graph_seconds(results: ResultDataset, k: int) -> float:
    """The predicted seconds of :func:`graph_scores` on ``results``, from two graphs of the first objects
    (a quarter of :data:`GRAPH_PILOT` and all of it, or fewer in a smaller table) built and searched here
    at a middling effort: each object's cost grows with the graph (memory out of cache, longer paths), as
    a power of N fitted on the two, extrapolated to the table. At 64-d, per object: 30 us to build at
    25,000, 80 at 100,000 and 107 at 400,000 (2 cores), so one small pilot scaled by log N would
    under-predict 10M objects several times."""
    import time

    import faiss

    count = len(results)
    large = max(2, min(GRAPH_PILOT, count // 4))
    pilot = []
    for _, _, vectors in _batches(results, check=False):
        pilot.append(vectors[: large - sum(len(v) for v in pilot)])
        if sum(len(v) for v in pilot) >= large:
            break
    pilot = np.concatenate(pilot)
    costs = []
    sizes = (max(2, len(pilot) // 4), len(pilot))
    for size in sizes:
        graph = faiss.IndexHNSWFlat(pilot.shape[1], GRAPH_LINKS)
        graph.hnsw.efConstruction = GRAPH_BUILD_EFFORT
        began = time.perf_counter()
        graph.add(pilot[:size])
        built = time.perf_counter() - began
        graph.hnsw.efSearch = 64
        queries = pilot[: min(size, GRAPH_PILOT_QUERIES)]
        began = time.perf_counter()
        graph.search(queries, k + 1)
        costs.append(built / size + (time.perf_counter() - began) / len(queries))
    growth = np.log(max(costs[1], 1e-12) / max(costs[0], 1e-12)) / np.log(sizes[1] / sizes[0])
    return float(count * costs[1] * (count / sizes[1]) ** max(0.0, growth))


def _graph_fits(count: int, dimension: int) -> tuple[bool, int]:
    need = count * (8 * dimension + 8 * GRAPH_LINKS + 40)  # the vectors twice while the graph is built
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return need <= GRAPH_MEMORY_SHARE * total, need


def graph_scores(
    results: ResultDataset,
    k: int,
    sample: np.ndarray,
    sample_rows: np.ndarray,
    exact: np.ndarray,
    client=None,
) -> tuple[np.ndarray, dict[str, str]]:
    """Every object's k-th-neighbour distance by a search in a faiss HNSW graph of all the vectors.
    ``sample``: the vectors of the table's rows ``sample_rows``, ``exact``: their exact k-th squared
    distances (self included, at 0), from which the search effort is chosen. ``client``: the graph is
    built here and searched by Dask workers, a range of rows each."""
    import faiss

    count, dimension = len(results), sample.shape[1]
    graph = faiss.IndexHNSWFlat(dimension, GRAPH_LINKS)
    graph.hnsw.efConstruction = GRAPH_BUILD_EFFORT
    # All the vectors in one add: faiss's HNSW built by many adds of 65,536 vectors was far worse (64-d
    # isotropic clusters, 200,000 objects: 0.51 of scores within 1% at efSearch 32 and 0.57 at 128,
    # against 0.91 and 0.99 built in one add). So the vectors are held twice while it is built.
    everything = np.empty((count, dimension), dtype=np.float32)
    with Progress("outlier scores 3/4: vectors for the graph", count) as progress:
        for start, _, vectors in _batches(results, check=False):
            everything[start : start + len(vectors)] = vectors
            progress.update(len(vectors))
    with Waiting(f"outlier scores: building a graph of {count:,} objects"):
        graph.add(everything)
    del everything
    within = exact * 1.01**2 + 1e-12
    for effort in GRAPH_EFFORTS:
        graph.hnsw.efSearch = effort
        distances, labels = graph.search(sample, k + 1)
        recall = float((_kth(distances, labels, sample_rows, k) <= within).mean())
        if recall >= TARGET_RECALL:
            break
    else:
        logger.warning(
            "outlier scores: the graph search scores only %.1f%% of a sample within 1%% of exact at its "
            "highest effort (%d)", 100 * recall, effort,
        )  # fmt: skip
    if client is not None:
        from hyrax.vector_db.outlier_shards import graph_on_cluster

        scores = graph_on_cluster(client, graph, results, k)
    else:
        scores = np.empty(count, dtype=np.float32)
        with Progress("outlier scores 4/4: neighbours (graph)", count) as progress:
            for start, _, vectors in _batches(results, check=False):
                scores[start : start + len(vectors)] = graph_distances(graph, vectors, start, k)
                progress.update(len(vectors))
    how = {
        "search": "graph",
        "links": str(GRAPH_LINKS),
        "effort": str(effort),
        "estimated_recall": f"{recall:.3f}",
    }
    return scores, how


def graph_distances(graph, vectors: np.ndarray, start: int, k: int) -> np.ndarray:
    """The k-th-neighbour distances of ``vectors`` (the table's rows from ``start``) found in ``graph``.
    Each query is searched on its own, so the scores do not depend on how the rows are cut in batches."""
    distances, labels = graph.search(vectors, k + 1)
    rows = np.arange(start, start + len(vectors))
    return np.sqrt(np.maximum(_kth(distances, labels, rows, k), 0))


def _kth(distances: np.ndarray, labels: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest squared distance of each query (the object of row ``rows``) counting itself at
    0. An approximate search may not return the query itself: then its k-th other neighbour found."""
    if k == 0:
        return np.zeros(len(distances), dtype=np.float32)
    itself = (labels == rows[:, None]).any(axis=1)
    return np.where(itself, distances[:, k], distances[:, k - 1])


def _with_home(probes: np.ndarray, homes: np.ndarray) -> np.ndarray:
    """``probes`` (lists per row) with each row's own list ``homes`` in place of its last when absent."""
    missing = ~(probes == homes[:, None]).any(axis=1)
    probes[missing, -1] = homes[missing]
    return probes


def _flat(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors.reshape(len(vectors), -1), dtype=np.float32)


def _batches(results: ResultDataset, check: bool = True) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, ids, float32 vectors) of every batch, checking that every value is finite."""
    row_bytes = 4 * max(1, int(np.prod(results.shape or (1,))))
    start = 0
    for ids, vectors in results.iter_batches(max(1024, BATCH_BYTES // row_bytes)):
        vectors = _flat(vectors)
        if check:
            _check_finite(results, ids, vectors, np.arange(start, start + len(ids)))
        yield start, ids, vectors
        start += len(ids)


def _check_finite(results: ResultDataset, ids: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> None:
    """A vector with NaN or inf would give every neighbour search nonsense (or 1.8e19): name it."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        more = f" (and {len(bad) - 1} more among rows {rows[0]}-{rows[-1]})" if len(bad) > 1 else ""
        raise DataError(
            f"Object {ids[bad[0]]} (row {rows[bad[0]]} of {results.table_path}) has a NaN or infinite value in "
            f"its vector{more}; outlier scores need finite vectors: fix the data or the model and run infer "
            f"again."
        )


def _sample(results: ResultDataset, count: int, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(sorted rows, float32 vectors) of a seeded sample of ``count`` objects, read in one streamed pass
    that also checks every vector. (A Lance ``take`` of many scattered rows keeps far more memory than
    the rows themselves: ~1.5 kB a row.)"""
    from hyrax.compute import sample_rows

    rows = sample_rows(len(results), count, np.random.default_rng(seed))
    sample = np.empty((len(rows), max(1, int(np.prod(results.shape or (1,))))), dtype=np.float32)
    with Progress(what, len(results)) as progress:
        for start, _, vectors in _batches(results):
            low, high = np.searchsorted(rows, [start, start + len(vectors)])
            sample[low:high] = vectors[rows[low:high] - start]
            progress.update(len(vectors))
    return rows, sample


def _exact_scores(results: ResultDataset, k: int) -> np.ndarray:
    import faiss

    vectors = np.concatenate([vectors for _, _, vectors in _batches(results)])
    scores = np.empty(len(vectors), dtype=np.float32)
    with Progress("outlier scores (exact)", len(vectors)) as progress:
        for start in range(0, len(vectors), 4096):
            distances, _ = faiss.knn(vectors[start : start + 4096], vectors, k + 1)
            scores[start : start + 4096] = np.sqrt(np.maximum(distances[:, k], 0))
            progress.update(len(distances))
    return scores


class PartitionedSearch:
    """The k-th-neighbour distance of every object, holding ~12 bytes per object (a list label, a row
    number, a score) and never all the vectors.

    0. A first pass reads a seeded sample and checks that every vector is finite; k-means (faiss) on it
       gives ``nlist`` centroids.
    1. Pass 1 streams the table, keeps each object's list (int32) and finds the exact neighbours of a
       sample (for :meth:`choose_nprobe`) over every vector.
    2. :meth:`group` (pass 2) writes the vectors grouped by list into a temporary file in ``directory``
       (``os.pwrite``; a memory map would count its pages in the process's memory).
    3. :meth:`scores` takes the lists a block of neighbouring lists at a time, finds for each object the
       ``nprobe`` centroids nearest to it, and searches the lists they name (read back with
       ``os.pread``, through a bounded cache) exactly with faiss.
    4. :meth:`refine` searches the objects scored highest again, in more lists, in steps (see
       :data:`REFINE_STEPS`).

    The file is unlinked as soon as it is made, so it goes away with the process however it ends.
    """

    def __init__(self, results: ResultDataset, k: int, nlist: int, seed: int, directory: Path):
        self.results, self.k, self.nlist, self.seed = results, k, nlist, seed
        self.count = len(results)
        self.dimension = max(1, int(np.prod(results.shape or (1,))))
        self.row_bytes = 4 * self.dimension
        self.directory = Path(directory)
        self.descriptor = None
        self.path: Path | None = None
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_bytes = 0

    def __enter__(self) -> PartitionedSearch:
        try:
            self._prepare()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
        self.cache.clear()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    #: What a Dask worker needs to search blocks of lists (a few arrays per list, nothing per object);
    #: it opens the file by :attr:`path` itself.
    WORKER_STATE = ("k", "nlist", "count", "dimension", "row_bytes", "centroids", "neighbours", "start",
                    "sizes", "order", "blocks", "path")  # fmt: skip

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.WORKER_STATE}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.descriptor, self.cache, self.cache_bytes = None, OrderedDict(), 0

    def _prepare(self) -> None:
        import faiss

        need = self.count * self.row_bytes
        free = shutil.disk_usage(self.directory).free
        if need > free:
            raise ResultsWriteError(
                f"Outlier scores need {need / 2**30:.1f} GiB of temporary space in {self.directory}; "
                f"{free / 2**30:.1f} GiB is free."
            )
        self.centroids = self._train()
        self.quantizer = faiss.IndexFlatL2(self.dimension)
        self.quantizer.add(self.centroids)
        self.labels = self._assign()
        self._layout(self.labels)

    def group(self, shared: bool = False) -> None:
        """Pass 2 (once the lists are chosen over a graph): the vectors grouped by list into the file.
        ``shared``: Dask workers open it by its name, so it is kept (in the run's directory, which they
        see) until :meth:`__exit__` removes it, instead of being unlinked at once."""
        path = self.directory / f".outliers-{os.getpid()}.vectors"
        self.descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        if shared:
            self.path = path
        else:
            os.unlink(path)
        self._group(self.labels)
        del self.labels

    def _train(self) -> np.ndarray:
        """k-means on a sample (read in a first pass that checks every vector); a smaller sample kept
        for :meth:`choose_nprobe`."""
        import faiss

        training = TRAIN_PER_LIST * self.nlist
        rows, sample = _sample(
            self.results, training + CALIBRATION_SAMPLE, self.seed, "outlier scores 1/4: sample"
        )
        chosen = np.random.default_rng(self.seed + 1).permutation(len(rows))
        self.sample = np.ascontiguousarray(sample[np.sort(chosen[:CALIBRATION_SAMPLE])])
        self.sample_rows = rows[np.sort(chosen[:CALIBRATION_SAMPLE])]
        rest = chosen[CALIBRATION_SAMPLE:]
        sample = sample[np.sort(rest)] if len(rest) >= training else sample  # small tables: all of it
        kmeans = faiss.Kmeans(
            self.dimension, self.nlist, niter=10, seed=self.seed, min_points_per_centroid=1,
            max_points_per_centroid=TRAIN_PER_LIST,
        )  # fmt: skip
        with Waiting(f"outlier scores: k-means of {len(sample):,} objects into {self.nlist:,} lists"):
            kmeans.train(sample)
        return np.ascontiguousarray(kmeans.centroids)

    def _assign(self) -> np.ndarray:
        """Pass 1: each object's list, and the sample's exact neighbours (with their lists)."""
        import faiss

        keep = min(self.count, 4 * (self.k + 1))
        self.sample_distances = np.full((len(self.sample), keep), np.inf, dtype=np.float32)
        self.sample_lists = np.zeros((len(self.sample), keep), dtype=np.int32)
        labels = np.empty(self.count, dtype=np.int32)
        with Progress("outlier scores 2/4: lists", self.count) as progress:
            for start, _, vectors in _batches(self.results, check=False):
                batch_labels = self.quantizer.search(vectors, 1)[1][:, 0]
                labels[start : start + len(vectors)] = batch_labels
                distances, found = faiss.knn(self.sample, vectors, min(keep, len(vectors)))
                self._merge_sample(distances, batch_labels[found])
                progress.update(len(vectors))
        return labels

    def _layout(self, labels: np.ndarray) -> None:
        """Order the lists so that neighbouring lists sit together in the file, and cut that order into
        blocks of lists searched together (each list's nearest lists first, greedily)."""
        import faiss

        self.sizes = np.bincount(labels, minlength=self.nlist).astype(np.int64)
        near = min(self.nlist, 4 * max(PROBES))
        self.neighbours = faiss.knn(self.centroids, self.centroids, near)[1].astype(np.int32)
        block_rows = max(1024, 2 * BATCH_BYTES // self.row_bytes)
        placed = np.zeros(self.nlist, dtype=bool)
        order, blocks = [], []
        for seed_list in range(self.nlist):
            if placed[seed_list]:
                continue
            block, rows = [], 0
            for member in self.neighbours[seed_list]:
                if rows >= block_rows:
                    break
                if not placed[member] and (not block or rows + self.sizes[member] <= block_rows):
                    placed[member] = True
                    block.append(member)
                    rows += self.sizes[member]
            if not placed[seed_list]:  # its own neighbours' lists are full: a block of its own
                placed[seed_list] = True
                block = [seed_list]
            blocks.append((len(order), len(order) + len(block)))
            order.extend(block)
        self.order = np.asarray(order, dtype=np.int64)
        self.blocks = blocks
        self.start = np.zeros(self.nlist + 1, dtype=np.int64)  # file row of each list, in list order
        self.start[self.order] = np.concatenate([[0], np.cumsum(self.sizes[self.order])[:-1]])
        self.start[self.nlist] = self.count

    def _group(self, labels: np.ndarray) -> None:
        """Pass 2: vectors grouped by list into the file."""
        cursor = self.start[: self.nlist].copy()
        # Each file row's results row, to put the scores back in row order.
        self.rows = np.empty(self.count, dtype=np.int32 if self.count < 2**31 else np.int64)
        with Progress("outlier scores 3/4: grouping", self.count) as progress:
            for start, _, vectors in _batches(self.results, check=False):
                batch_labels = labels[start : start + len(vectors)]
                order = np.argsort(batch_labels, kind="stable")
                grouped_labels = batch_labels[order]
                grouped = vectors[order]
                lists, first, counts = np.unique(grouped_labels, return_index=True, return_counts=True)
                for member, offset, size in zip(lists, first, counts, strict=True):
                    where = int(cursor[member])
                    os.pwrite(self.descriptor, grouped[offset : offset + size], where * self.row_bytes)
                    self.rows[where : where + size] = start + order[offset : offset + size]
                    cursor[member] += size
                progress.update(len(vectors))

    def _merge_sample(self, distances: np.ndarray, lists: np.ndarray) -> None:
        both = np.concatenate([self.sample_distances, distances], axis=1)
        both_lists = np.concatenate([self.sample_lists, lists], axis=1)
        best = np.argsort(both, axis=1, kind="stable")[:, : self.sample_distances.shape[1]]
        self.sample_distances = np.take_along_axis(both, best, axis=1)
        self.sample_lists = np.take_along_axis(both_lists, best, axis=1)

    def _probes(self, vectors: np.ndarray, home: int, nprobe: int) -> np.ndarray:
        """The ``nprobe`` lists nearest to each vector of list ``home`` (always ``home`` itself), looked
        for among the lists nearest to ``home``'s centroid."""
        return _with_home(self._nearest_lists(vectors, home, nprobe), np.full(len(vectors), home))

    def _nearest_lists(self, vectors: np.ndarray, home: int, count: int) -> np.ndarray:
        width = min(self.nlist, max(64, 4 * count))
        nearby = self.neighbours[home, :width] if width <= self.neighbours.shape[1] else np.arange(self.nlist)
        return nearby[knn_on_any_threads(vectors, self.centroids[nearby], count)[1]]

    def choose_nprobe(self, nprobe: int | None) -> tuple[int, float]:
        """``nprobe`` (given, or the smallest of :data:`PROBES` that scores :data:`TARGET_RECALL` of the
        sample within 1% of exact), and the share of the sample it scores within 1%."""
        exact = self.sample_distances[:, self.k]
        sample_labels = self.quantizer.search(self.sample, 1)[1][:, 0]
        within = self.sample_distances <= exact[:, None] * 1.01**2 + 1e-12  # squared distances
        candidates = [min(nprobe, self.nlist)] if nprobe else sorted({min(p, self.nlist) for p in PROBES})
        # The lists nearest each sample vector, found once for the most probes tried: every candidate
        # takes a prefix. (One small search per list and per candidate cost ~10 ms each on a loaded
        # machine, in faiss's threads: 25 s of 40 for 10,000 objects.)
        nearest = np.empty((len(self.sample), candidates[-1]), dtype=np.int64)
        for home in np.unique(sample_labels):
            members = np.flatnonzero(sample_labels == home)
            nearest[members] = self._nearest_lists(self.sample[members], int(home), candidates[-1])
        recall = 0.0
        self.recalls: dict[int, float] = {}  # the share of the sample within 1% at each number tried
        for chosen in candidates:
            probes = _with_home(nearest[:, :chosen].copy(), sample_labels)
            searched = (self.sample_lists[:, :, None] == probes[:, None, :]).any(axis=2)
            recall = float(((within & searched).sum(axis=1) >= self.k + 1).mean())
            self.recalls[chosen] = recall
            if recall >= TARGET_RECALL:
                break
        return chosen, recall

    def time_lists(self) -> tuple[float, float]:
        """(seconds an object, seconds an object and probe) of the list search on this machine: the
        largest block searched at two numbers of probes (after :meth:`group`)."""
        import time

        number = int(np.argmax([end - begin for begin, end in self.blocks]))
        begin, end = self.blocks[number]
        objects = int(self.sizes[self.order[begin:end]].sum()) or 1
        low, high = min(2, self.nlist), min(8, self.nlist)
        took = []
        for probes in (low, high):
            began = time.perf_counter()
            self.score_block(number, probes)
            took.append((time.perf_counter() - began) / objects)
        slope = max(0.0, (took[1] - took[0]) / max(1, high - low))
        return max(0.0, took[0] - slope * low), slope

    def _read(self, member: int, block: tuple[int, np.ndarray] | None = None) -> np.ndarray:
        """The vectors of list ``member``: from the block in hand, the cache, or the file."""
        if block is not None:
            first, vectors = block
            offset = self.start[member] - first
            if offset >= 0 and offset + self.sizes[member] <= len(vectors):
                return vectors[offset : offset + self.sizes[member]]
        if member in self.cache:
            self.cache.move_to_end(member)
            return self.cache[member]
        vectors = self._pread(self.start[member], self.sizes[member])
        self.cache[member] = vectors
        self.cache_bytes += vectors.nbytes
        while self.cache_bytes > CACHE_BYTES and len(self.cache) > 1:
            self.cache_bytes -= self.cache.popitem(last=False)[1].nbytes
        return vectors

    def _pread(self, first: int, count: int) -> np.ndarray:
        raw = os.pread(self.descriptor, int(count) * self.row_bytes, int(first) * self.row_bytes)
        return np.frombuffer(raw, dtype=np.float32).reshape(-1, self.dimension)

    def scores(self, nprobe: int, client=None) -> np.ndarray:
        """Pass 3: search every object's ``nprobe`` nearest lists (a block of lists at a time; with
        ``client``, blocks on Dask workers: the same search of the same blocks, so the same scores)."""
        scores = np.empty(self.count, dtype=np.float32)
        with Progress("outlier scores 4/4: neighbours", self.count) as progress:
            if client is not None:
                from hyrax.vector_db.outlier_shards import blocks_on_cluster

                found = blocks_on_cluster(
                    client, self, nprobe, lambda first, values: progress.update(len(values))
                )
            else:
                found = (self.score_block(number, nprobe) for number in range(len(self.blocks)))
            for first, values in found:
                scores[self.rows[first : first + len(values)]] = values
                if client is None:
                    progress.update(len(values))
        return scores

    def score_block(self, number: int, nprobe: int) -> tuple[int, np.ndarray]:
        """(first file row, k-th-neighbour distances of its objects in file order) of block ``number``."""
        begin, end = self.blocks[number]
        lists = self.order[begin:end]
        first = int(self.start[lists[0]])
        block = self._pread(first, self.start[lists[-1]] + self.sizes[lists[-1]] - first)
        if not len(block):
            return first, np.empty(0, dtype=np.float32)
        _, best = self._search_block(lists, first, block, nprobe)
        return first, np.sqrt(np.maximum(best.max(axis=1), 0))

    def refine(self, scores: np.ndarray, nprobe: int) -> list[tuple[int, int]]:
        """Pass 4: at each of :data:`REFINE_STEPS`, the objects scored highest searched again in more
        lists, block by block as :meth:`scores` searches (here, not on Dask workers: the same scores
        either way); ``scores`` (row order) lowered in place where nearer neighbours are found. Returns
        (objects searched again, their nprobe) of each step made (none when no list is left to add)."""
        made: list[tuple[int, int]] = []
        for share, at_least, times in REFINE_STEPS:
            wider = min(self.nlist, times * nprobe)
            top = min(self.count, max(at_least, int(np.ceil(share * self.count))))
            if wider <= (made[-1][1] if made else nprobe) or top == 0:
                continue
            made.append((self._refine_top(scores, top, wider), wider))
        return made

    def _refine_top(self, scores: np.ndarray, top: int, wider: int) -> int:
        """The ``top`` objects scored highest (ties at the bound: all of them) searched in ``wider`` lists;
        returns how many were."""
        lowest = np.partition(scores, self.count - top)[self.count - top]  # 4 B an object, for a moment
        wanted = (scores >= lowest)[self.rows]  # by file row
        top = int(wanted.sum())
        with Progress(f"outlier scores: the top {top:,} again in {wider} lists", top) as progress:
            for begin, end in self.blocks:
                lists = self.order[begin:end]
                first = int(self.start[lists[0]])
                last = int(self.start[lists[-1]] + self.sizes[lists[-1]])
                here = wanted[first:last]
                if not here.any():
                    continue
                at, best = self._search_block(lists, first, self._pread(first, last - first), wider, here)
                rows = self.rows[first + at]
                scores[rows] = np.minimum(scores[rows], np.sqrt(np.maximum(best.max(axis=1), 0)))
                progress.update(len(at))
        return top

    def _search_block(
        self, lists: np.ndarray, first: int, block: np.ndarray, nprobe: int, wanted: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k+1 smallest squared distances (self included) of each object of a block of lists (those
        ``wanted`` marks, when given): (their rows in the block, the distances)."""
        at, probes = [], []
        for home in lists:
            offset, size = int(self.start[home]) - first, int(self.sizes[home])
            rows = np.arange(offset, offset + size)
            if wanted is not None:
                rows = rows[wanted[offset : offset + size]]
            if len(rows):
                at.append(rows)
                probes.append(self._probes(block[rows], int(home), nprobe))
        at, probes = np.concatenate(at), np.concatenate(probes)
        queries_of = block if wanted is None else block[at]  # (every row of the block: at is 0, 1, ...)
        best = np.full((len(at), self.k + 1), np.inf, dtype=np.float32)
        pairs = probes.ravel()
        order = np.argsort(pairs, kind="stable")
        queries = order // probes.shape[1]
        members, starts = np.unique(pairs[order], return_index=True)
        for member, begin, end in zip(members, starts, [*starts[1:], len(order)], strict=True):
            candidates = self._read(int(member), (first, block))
            if not len(candidates):
                continue
            asking = queries[begin:end]
            distances, _ = knn_on_any_threads(
                queries_of[asking], candidates, min(self.k + 1, len(candidates))
            )
            both = np.concatenate([best[asking], distances], axis=1)
            best[asking] = np.partition(both, self.k, axis=1)[:, : self.k + 1]
        short = np.flatnonzero(~np.isfinite(best).all(axis=1))
        if len(short):  # the lists searched hold fewer than k+1 objects: search them all
            best[short] = self._search_everything(queries_of[short])
        return at, best

    def _search_everything(self, queries: np.ndarray) -> np.ndarray:
        best = np.full((len(queries), self.k + 1), np.inf, dtype=np.float32)
        step = max(1024, BATCH_BYTES // self.row_bytes)
        for first in range(0, self.count, step):
            candidates = self._pread(first, min(step, self.count - first))
            distances, _ = knn_on_any_threads(queries, candidates, min(self.k + 1, len(candidates)))
            best = np.partition(np.concatenate([best, distances], axis=1), self.k, axis=1)[:, : self.k + 1]
        return best
