"""How much of the machine Hyrax's numerical work uses: ``general.threads``, else every core this process
may use (its CPU affinity, which Slurm, torchrun and taskset set), never a number written in the code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def threads(config: Mapping | None = None) -> int:
    """``general.threads``, else the number of cores this process may use."""
    from hyrax.config import get_setting

    configured = get_setting(config, "general.threads") if config is not None else None
    if configured is not None:
        return max(1, int(configured))
    return _cores()


def _cores() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


#: glibc's M_ARENA_MAX (mallopt parameter number).
_M_ARENA_MAX = -8


def limit_malloc_arenas() -> int | None:
    """Cap glibc's malloc arenas at the cores this process may use (at least 2); return the cap, or None
    where nothing was changed (not glibc, or ``MALLOC_ARENA_MAX`` set by the user, which wins).

    Lance reads with many threads, and glibc gives each thread its own arena (up to 8 per core): buffers
    freed there stay resident. Measured on a 10M-row scan of 64-d vectors (2 cores): 330-600 MB left
    resident with glibc's default, 280 MB with 2 arenas, at the same speed; a whole-table pass then
    costs memory that follows the threads, not the table. Called once when Hyrax is imported, before
    any reader thread starts.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None
    cap = max(2, _cores())
    return cap if mallopt(_M_ARENA_MAX, cap) == 1 else None


def use_threads(config: Mapping | None = None) -> int:
    """Let faiss (every nearest-neighbour search) use :func:`threads` threads; return that number."""
    count = threads(config)
    import faiss

    faiss.omp_set_num_threads(count)
    return count


def knn_on_any_threads(queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``faiss.knn(queries, candidates, k)`` (squared L2 distances, rows), the same to the last bit on any
    number of threads, so that a Dask worker (one thread) finds what this process (several) finds.

    faiss computes each distance on its own, ``(x - y)^2`` summed, while a call holds fewer than
    ``faiss.cvar.distance_compute_blas_threshold`` query values (128,000 in faiss 1.15: 8,000 queries at
    16-d); above that it uses ``|x|^2 + |y|^2 - 2 x.y`` from a BLAS matrix product whose rounding depends
    on how the product is split between threads (outlier scores of 156 of 60,000 objects differed between
    one and two threads). So the queries are searched a run below that size at a time. Measured on one
    thread, 60,000 queries against 1,000 candidates: 1.3x the BLAS time at 16-d, 1.8x at 64-d; and more
    exact (no cancellation).

    >>> import numpy as np
    >>> points = np.random.default_rng(0).standard_normal((20_000, 16)).astype(np.float32)
    >>> distances, rows = knn_on_any_threads(points, points[:100], 2)
    >>> distances.shape, rows.dtype.kind
    ((20000, 2), 'i')
    """
    import faiss
    import numpy as np

    step = max(1, (int(faiss.cvar.distance_compute_blas_threshold) - 1) // max(1, queries.shape[1]))
    if len(queries) <= step:
        return faiss.knn(queries, candidates, k)
    found = [
        faiss.knn(queries[start : start + step], candidates, k) for start in range(0, len(queries), step)
    ]
    return np.concatenate([pair[0] for pair in found]), np.concatenate([pair[1] for pair in found])


def sample_rows(total: int, size: int, rng) -> np.ndarray:
    """A uniform random sample of ``size`` distinct rows out of ``total`` (all of them when fewer),
    sorted, in memory that follows the sample, not ``total`` (numpy's ``choice(..., replace=False)``
    shuffles every row: 80 MB for 10M). ``rng``: a numpy Generator.

    >>> import numpy as np
    >>> rows = sample_rows(10_000_000, 5, np.random.default_rng(0))
    >>> len(rows), len(set(rows.tolist())), bool((np.diff(rows) > 0).all())
    (5, 5, True)
    """
    import numpy as np

    size = min(int(size), int(total))
    if size * 4 >= total:  # a dense sample: shuffling every row costs about what the sample does
        return np.sort(rng.permutation(total)[:size])
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < size:  # independent draws, repeats dropped: every row equally likely
        draw = rng.integers(0, total, size=(size - len(chosen)) * 21 // 20 + 16, dtype=np.int64)
        chosen = np.unique(np.concatenate([chosen, draw]))
    if len(chosen) > size:  # a uniform subset of a uniform sample is uniform
        chosen = np.sort(rng.choice(chosen, size=size, replace=False))
    return chosen
