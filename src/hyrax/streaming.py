"""Bounded pipelines: read, compute and write overlap, with a fixed number of items in memory.

``Executor.map`` submits every item at once, so a reader that is faster than the writer fills memory
with the whole input. :func:`bounded_map` reads the next item only when there is room.

>>> list(bounded_map(lambda x: x * x, range(5), workers=1, ahead=2))
[0, 1, 4, 9, 16]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def bounded_map(
    function: Callable[[Any], Any], items: Iterable[Any], workers: int = 1, ahead: int = 2
) -> Iterator[Any]:
    """``function(item)`` for each item, in order, computed by ``workers`` threads (0: in the caller's
    thread), with at most ``ahead`` items read and not yet handed back."""
    if workers <= 0:
        yield from map(function, items)
        return
    ahead = max(1, int(ahead))
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
