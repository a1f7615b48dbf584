"""The random-access copies of catalogs under ``<cache_dir>/tables``: a size limit
(``data_set.table_cache_gb``), the least recently used copies removed to make room, never one in use.

>>> # budget = room_for_copy(cache, limit)   # bytes the new copy may take (the copies in use kept)
>>> # ... write the copy, stopping with an error naming the key past `budget` ...
>>> # hold = use(target)                     # this process uses it: not evicted while `hold` is open
>>> # evict(cache, limit)                    # least recently used copies out until the rest fit

A copy is in use while a process holds a shared ``flock`` on ``<copy>.lock`` (released when the process
dies, however it dies); eviction takes the lock exclusively, without waiting, so it passes over a copy
in use. "Last use" is the copy's modification time, set each time a dataset opens it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

KEY = "data_set.table_cache_gb"
GB = 2**30


def limit_bytes(config) -> int:
    """``data_set.table_cache_gb`` in bytes."""
    from hyrax.config import get_setting
    from hyrax.errors import ConfigError

    value = get_setting(config, KEY)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            f"{KEY} = {value!r}: give the most gigabytes the table copies may take (e.g. 50.0)."
        )
    return int(value * GB)


def size_of(path: Path) -> int:
    """Bytes of the files under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                total += os.stat(os.path.join(root, name)).st_size
    return total


def copies(cache: Path) -> list[Path]:
    """The finished copies, least recently used first."""
    if not cache.is_dir():
        return []
    found = [p for p in cache.glob("*.lance") if (p / "_versions").is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def use(target: Path):
    """Mark ``target`` used now and in use by this process until the returned file is closed (or the
    process ends)."""
    os.utime(target)
    hold = open(target.with_name(target.name + ".lock"), "a")  # noqa: SIM115 - held for the dataset's life
    fcntl.flock(hold, fcntl.LOCK_SH)
    return hold


def _try_remove(copy: Path) -> bool:
    """Remove a copy no process holds; False (kept) when one does."""
    lock = copy.with_name(copy.name + ".lock")
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(copy, ignore_errors=True)
        lock.unlink(missing_ok=True)
    return True


def in_use_bytes(cache: Path) -> int:
    """Bytes of the copies some process holds (eviction cannot free them)."""
    total = 0
    for copy in copies(cache):
        with open(copy.with_name(copy.name + ".lock"), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
            except BlockingIOError:
                total += size_of(copy)
    return total


def evict(cache: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used copies (not ``keep``, not one in use) until the copies take at most
    ``limit`` bytes; returns those removed."""
    present = copies(cache)
    sizes = {copy: size_of(copy) for copy in present}
    total = sum(sizes.values())
    removed = []
    for copy in present:
        if total <= limit:
            break
        if copy == keep:
            continue
        if _try_remove(copy):
            total -= sizes[copy]
            removed.append(copy)
            logger.info(
                "%s: removed the least recently used table copy %s (%.2f GB)", KEY, copy, sizes[copy] / GB
            )
    return removed


def too_big(limit: int, written: int, in_use: int) -> str:
    """The error of a copy that passed its budget."""
    return (
        f"its copy passed {KEY} = {limit / GB:g} ({written / GB:.2f} GB written, {in_use / GB:.2f} GB of other "
        f"copies in use): raise {KEY}, or copy less (a region: cone or box; fewer columns), or stream it "
        f'without a copy (dataset_class = "LSDBStreamDataset")'
    )
