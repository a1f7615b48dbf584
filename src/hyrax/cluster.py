"""Dask workers for the CPU stages: ``[dask] scheduler`` says where a stage's shards run.

``"none"`` (the default): in this process, as always. ``"local"``: a ``LocalCluster`` of
``dask.workers`` processes started for the stage and closed after it. Anything else is the address of a
running scheduler (``"tcp://host:8786"``), for example one that dask-jobqueue's ``SLURMCluster``
started; the stage connects, submits and disconnects, leaving the cluster running.

A stage plans its shards in this process (k-means, calibration, a fitted reducer: once), submits one task
per shard, and gathers the results here, so what it writes is written once, by this process, as on one
machine. A worker that dies mid-task has its task given to another by Dask's scheduler
(``distributed.scheduler.allowed-failures``); a shard's result depends only on its input, so the
result is the same.

>>> with dask_client({"dask": {"scheduler": "none"}}) as client:
...     client is None
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from hyrax.errors import ConfigError, HyraxError


def scheduler_setting(config: Mapping | None) -> str:
    """``dask.scheduler`` ("none" when there is no config or no [dask] table)."""
    if not config or "dask" not in config:
        return "none"
    value = config["dask"].get("scheduler", "none")
    if value is False or value is None:
        return "none"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f'dask.scheduler must be "none", "local" or the address of a Dask scheduler '
            f'("tcp://host:8786"); got {value!r}.'
        )
    return value.strip()


@contextmanager
def dask_client(config: Mapping | None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``[dask]``, or None when ``dask.scheduler = "none"``."""
    scheduler = scheduler_setting(config)
    if scheduler == "none":
        yield None
        return
    from distributed import Client

    if scheduler != "local":
        if "://" not in scheduler and ":" not in scheduler:
            raise ConfigError(
                f'dask.scheduler must be "none", "local" or the address of a Dask scheduler '
                f'("tcp://host:8786"); got {scheduler!r}.'
            )
        with Client(scheduler) as client:
            yield client
        return
    from distributed import LocalCluster

    settings = config["dask"]
    workers, threads = int(settings.get("workers", 2)), int(settings.get("threads_per_worker", 1))
    if workers < 1 or threads < 1:
        raise ConfigError(
            f"dask.workers and dask.threads_per_worker must be whole numbers >= 1; got {workers}, {threads}."
        )
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            memory_limit=settings.get("memory_limit", "auto"),
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def worker_count(client: Any) -> int:
    """How many workers the client's cluster has now (at least 1)."""
    return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))


def run_shards(
    client: Any, function: Callable, shards: Sequence, *arguments: Any, progress: Callable | None = None
) -> list:
    """``[function(shard, *arguments) for shard in shards]`` on the client's workers, in shard order.
    The arguments are sent to the cluster once (not once per task); ``progress(result)`` is called as
    each shard's result comes back."""
    from distributed import as_completed

    shared = [client.scatter(argument, broadcast=True) for argument in arguments]
    futures = [client.submit(function, shard, *shared, pure=False) for shard in shards]
    position = {future.key: number for number, future in enumerate(futures)}
    if len(position) != len(shards):
        raise HyraxError(
            f"Dask gave {len(position)} distinct tasks for {len(shards)} shards; expected one each."
        )
    missing = object()
    results: list = [missing] * len(futures)
    try:
        for future, result in as_completed(futures, with_results=True):
            results[position[future.key]] = result
            if progress is not None:
                progress(result)
    finally:
        client.cancel(futures)
    absent = [number for number, result in enumerate(results) if result is missing]
    if absent:
        raise HyraxError(
            f"{len(absent)} of {len(shards)} shards of {getattr(function, '__name__', function)} came back "
            f"without a result (shard {absent[0]} first); run the stage again."
        )
    return results


def ordered_shards(
    client: Any, function: Callable, shards: Iterable, *arguments: Any, window: int
) -> Iterator:
    """``function(shard, *arguments)`` for each shard on the client's workers, yielded in shard order,
    with at most ``window`` shards submitted and not yet taken (so the results held here stay bounded, and
    the caller can write them in order as they come). The arguments are sent to the cluster once."""
    shared = [client.scatter(argument, broadcast=True) for argument in arguments]
    waiting: deque = deque()
    shards = iter(shards)
    try:
        while True:
            while len(waiting) < max(1, window):
                shard = next(shards, None)
                if shard is None:
                    break
                waiting.append(client.submit(function, shard, *shared, pure=False))
            if not waiting:
                return
            future = waiting.popleft()
            yield future.result()
            future.release()
    finally:
        client.cancel(list(waiting))
