"""How much of the machine Hyrax's numerical work uses: ``general.threads``, else every core this process
may use (its CPU affinity, which Slurm, torchrun and taskset set), never a number written in the code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def threads(config: Mapping | None = None) -> int:
    """``general.threads``, else the number of cores this process may use."""
    from hyrax.config import get_setting

    configured = get_setting(config, "general.threads") if config is not None else None
    if configured is not None:
        return max(1, int(configured))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def use_threads(config: Mapping | None = None) -> int:
    """Let faiss (every nearest-neighbour search) use :func:`threads` threads; return that number."""
    count = threads(config)
    import faiss

    faiss.omp_set_num_threads(count)
    return count
