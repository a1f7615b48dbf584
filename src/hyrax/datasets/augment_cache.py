"""Augmented values kept for reuse, as the published Hyrax's ``augment_cache_key`` asks, in bounded memory.

A dataset whose augmentation is deterministic and costly names what makes one result different from
another: ``augment_cache_key(idx, rng_seed)`` returns a hashable key (say ``(idx, rng_seed % 4)`` for
four fixed views of each object), or None (the default) to compute it every time. With
``data_set.use_cache`` (true, as published) the result of ``augment_<field>`` is kept under
``(dataset, field, key)`` and returned again, read-only, for the same key.

Unlike the published cache (every value kept, without a limit) this one holds at most
``data_set.augment_cache_mb`` megabytes per reading process, the least recently used dropped first; the
un-augmented values are not cached (samples are streamed, see ``docs/migration.md``). Each process that
reads keeps its own: the main process (``data_loader.num_workers = 0``, or table fields, read there) for
the whole run, a DataLoader worker for the epoch it lives.

>>> cache = AugmentCache(max_bytes=300)            # an array of 4 float64 counts 32 + 112 bytes
>>> kept = cache.put(("d", "image", 1), np.zeros(4))
>>> kept = cache.put(("d", "image", 2), np.ones(4))
>>> kept = cache.put(("d", "image", 3), np.ones(4))  # over 300 bytes: the least recently used goes
>>> cache.get(("d", "image", 1)) is None, cache.get(("d", "image", 3)).tolist(), kept.flags.writeable
(True, [1.0, 1.0, 1.0, 1.0], False)
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np


def value_bytes(value: Any) -> int:
    """Bytes a value holds: an array's buffer, a dict's or list's items, else what Python reports."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 112
    if isinstance(value, Mapping):
        return sys.getsizeof(value) + sum(value_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sys.getsizeof(value) + sum(value_bytes(v) for v in value)
    return sys.getsizeof(value)


def read_only(value: Any) -> Any:
    """The value with its arrays made read-only, so that the copy kept cannot be changed by a reader."""
    if isinstance(value, np.ndarray):
        value = value.view()
        value.flags.writeable = False
    elif isinstance(value, dict):
        value = {k: read_only(v) for k, v in value.items()}
    return value


class AugmentCache:
    """Least-recently-used values under a byte budget (``max_bytes``); one larger than it is not kept."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._values: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Hashable) -> Any:
        found = self._values.get(key)
        if found is None:
            self.misses += 1
            return None
        self._values.move_to_end(key)
        self.hits += 1
        return found[0]

    def put(self, key: Hashable, value: Any) -> Any:
        """Keep ``value`` under ``key`` (read-only); returns what is kept."""
        size = value_bytes(value)
        value = read_only(value)
        if size > self.max_bytes:
            return value
        old = self._values.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        while self._values and self.bytes + size > self.max_bytes:
            _, (_, dropped) = self._values.popitem(last=False)
            self.bytes -= dropped
        self._values[key] = (value, size)
        self.bytes += size
        return value

    def augmented(self, hook, value: Any, row: int, seed: int) -> Any:
        """``hook(value, row, seed)`` (a dataset's ``augment_<field>``), through the cache when the
        dataset's ``augment_cache_key(row, seed)`` names a key."""
        dataset = getattr(hook, "__self__", None)
        key_of = getattr(dataset, "augment_cache_key", None)
        key = key_of(row, seed) if callable(key_of) else None
        if key is None:
            return hook(value, row, seed)
        full_key = (id(dataset), getattr(hook, "__name__", ""), key)
        found = self.get(full_key)
        if found is not None:
            return found
        return self.put(full_key, hook(value, row, seed))
