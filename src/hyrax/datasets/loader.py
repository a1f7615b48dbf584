"""Batches of a provider through a torch DataLoader, as numpy.

Worker processes hand batches to the main process. Numpy arrays would be pickled through a pipe (a
copy of every byte, slowly); torch tensors travel through shared memory. So, inside the loader only,
a worker stacks same-shape arrays with torch's public ``default_collate`` (which writes the batch
straight into shared memory) and wraps other numeric arrays as tensors without a copy; the main process
unwraps them without a copy. Callers see numpy, as everywhere else in Hyrax.

An error raised while a worker reads an object reaches the main process as the error it was (its type
and message), raised there once, with the worker's traceback logged at debug level: not as torch's
"Caught DataError in DataLoader worker process 1" holding the traceback in its message (which Ignite
and the command line then printed three times over).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.errors import DataError

logger = logging.getLogger(__name__)

#: Ends the first data error of a training or inference run: one command checks every object at once.
PREPARE_POINTER = "Run `hyrax prepare` (h.prepare()) to check every object at once."


def point_to_prepare(error: BaseException) -> BaseException:
    """Append :data:`PREPARE_POINTER` to a data error's message (once), keeping the error itself (its
    type and traceback) for a bare ``raise``."""
    args = getattr(error, "args", ())
    if args and isinstance(args[0], str) and PREPARE_POINTER not in args[0]:
        text = args[0].rstrip()
        error.args = (f"{text}{' ' if text.endswith('.') else '. '}{PREPARE_POINTER}", *args[1:])
    return error


class _WorkerFailure:
    """An error raised in a DataLoader worker, carried to the main process in place of its batch."""

    def __init__(self, error: BaseException):
        import pickle
        import traceback

        self.traceback = "".join(traceback.format_exception(error))
        try:  # the error itself when it survives the trip (a class of a notebook cell does, under fork)
            pickle.loads(pickle.dumps(error))
            self.error = error
        except Exception:  # an error holding something unpicklable: its type and message
            self.error = RuntimeError(f"{type(error).__name__}: {error}")
        self.error.__traceback__ = None  # the frames travel as text; the error is raised anew there

    def raise_here(self):
        logger.debug("the error below was raised in a DataLoader worker:\n%s", self.traceback.rstrip())
        raise self.error


class _Guarded:
    """The provider as a DataLoader worker reads it: an error becomes a :class:`_WorkerFailure`."""

    def __init__(self, provider):
        self.provider = provider

    def __len__(self) -> int:
        return len(self.provider)

    def __getitem__(self, index):
        try:
            return self.provider[index]
        except Exception as error:
            return _WorkerFailure(error)

    def __getitems__(self, request):
        try:
            return self.provider.__getitems__(request)
        except Exception as error:
            return [_WorkerFailure(error)]


def _stack_shared(arrays: list[np.ndarray]) -> Any:
    """Stack in a worker process straight into shared memory (torch's default_collate does that)."""
    import torch
    from torch.utils.data import default_collate

    if arrays[0].dtype.kind in "biuf" and arrays[0].dtype.isnative:
        return default_collate([torch.from_numpy(a) for a in arrays])
    return np.stack(arrays)


def _wrap(value: Any) -> Any:
    import torch

    if isinstance(value, dict):
        return {k: _wrap(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.dtype.isnative:
        return torch.from_numpy(value)
    return value


def _unwrap(value: Any) -> Any:
    import torch

    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return value


class _Collate:
    """Picklable collate: the provider's batch (in a worker process, numeric arrays as tensors so they
    travel through shared memory) and the objects this process skipped since its last batch, so that
    skips made inside worker processes reach the main process."""

    def __init__(self, provider, shared: bool):
        self.provider, self.shared = provider, shared

    def __call__(self, samples):
        if self.shared:  # in a worker process
            failed = next((s for s in samples if isinstance(s, _WorkerFailure)), None)
            if failed is not None:
                return failed, []
            try:
                batch = _wrap(self.provider.collate(samples, stack=_stack_shared))
            except Exception as error:
                return _WorkerFailure(error), []
        else:
            batch = self.provider.collate(samples)
        return batch, self.provider.take_skipped()


class Skips:
    """Objects left out of a stage (``data_set.on_bad_object = "skip"``), gathered from every worker:
    a count, the first reasons, and every one appended to a CSV file (object_id, reason, row) when given.

    Args:
        path: the CSV file (appended to; a resumed stage continues it).
        count: objects skipped before (by the run this one resumes).
        distinct: count each object once however often it is met (training meets it every epoch).
    """

    HEADER = ("object_id", "reason", "row")

    def __init__(
        self, path: str | Path | None = None, count: int = 0, keep: int = 20, distinct: bool = False
    ):
        self.path = Path(path) if path is not None else None
        self.count, self.keep = int(count), keep
        self.examples: list[tuple[str, str, int]] = []
        self._seen: set[str] | None = set() if distinct else None

    def add(self, skipped: list[tuple[str, str, int]]) -> None:
        if self._seen is not None:
            skipped = [item for item in skipped if item[0] not in self._seen]
            self._seen.update(item[0] for item in skipped)
        if not skipped:
            return
        self.count += len(skipped)
        self.examples.extend(skipped[: max(0, self.keep - len(self.examples))])
        if self.path is not None:
            import csv

            new = not self.path.exists()
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(self.HEADER)
                writer.writerows(skipped)

    def summary(self) -> str:
        """One line: how many, the first few reasons, and where the full list is."""
        shown = "; ".join(f"{item[0]}: {item[1]}" for item in self.examples[:5])
        where = f" (all listed in {self.path})" if self.path is not None else ""
        return f"{self.count} object(s) skipped{where}" + (f", e.g. {shown}" if shown else "")

    @classmethod
    def resume(cls, path: str | Path, done_rows: np.ndarray) -> Skips:
        """Continue the skip list of a stage that is resumed: entries for rows it will visit again are
        dropped (they would be listed twice), the rest are kept and counted."""
        import pandas as pd

        from hyrax.results.run_dir import write_text_atomic

        path = Path(path)
        if not path.is_file():
            return cls(path)
        frame = pd.read_csv(path, dtype={"object_id": str, "reason": str})
        kept = frame[np.isin(frame["row"].to_numpy(), done_rows)]
        write_text_atomic(path, kept.to_csv(index=False))
        return cls(path, count=len(kept))


class PrefetchingBatches:
    """Batches of ``sampler``'s indices, each with what it needs from tables already read
    (:meth:`DataProvider.prefetch`), for a torch DataLoader's ``batch_sampler``."""

    def __init__(self, provider, sampler: Iterable[int], batch_size: int):
        self.provider, self.sampler, self.batch_size = provider, sampler, int(batch_size)

    def __iter__(self):
        batch: list[int] = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield self.provider.prefetch(batch)
                batch = []
        if batch:
            yield self.provider.prefetch(batch)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)


def _die_with_parent(parent: int, worker_id: int) -> None:
    """In a DataLoader worker: end when the process that started it ends, however it ends (kill -9
    included; a worker left alone would block forever writing to a pipe nobody reads)."""
    import sys

    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before that took effect
        os._exit(1)


class NumpyLoader:
    """Iterates numpy batches of ``provider`` in the order ``sampler`` gives (default: dataset order).

    Args:
        provider: a :class:`~hyrax.datasets.provider.DataProvider`.
        sampler: an iterable of row indices (a split's indices, an EpochSampler...).
        batch_size, num_workers: as for torch's DataLoader.
        skips: where objects skipped while loading are counted (in this process or any worker).
    """

    def __init__(
        self,
        provider,
        sampler: Iterable[int] | None = None,
        batch_size: int = 512,
        num_workers: int = 0,
        skips: Skips | None = None,
        **kwargs,
    ):
        from torch.utils.data import DataLoader

        self.provider = provider
        self.sampler = sampler if sampler is not None else range(len(provider))
        self.num_workers = num_workers
        self.skips = skips if skips is not None else Skips()
        if num_workers > 0 and getattr(provider, "reads_tables", False):
            # Lance is not fork-safe: tables are read here, in the main process, a batch ahead of the
            # workers, which get the values with the batch's indices.
            batching = {"batch_sampler": PrefetchingBatches(provider, self.sampler, batch_size)}
        else:
            batching = {"batch_size": batch_size, "sampler": self.sampler}
        if num_workers > 0:
            import functools

            kwargs.setdefault("worker_init_fn", functools.partial(_die_with_parent, os.getpid()))
        self.loader = DataLoader(
            _Guarded(provider) if num_workers > 0 else provider,
            num_workers=num_workers,
            collate_fn=_Collate(provider, shared=num_workers > 0),
            persistent_workers=False,
            **batching,
            **kwargs,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import warnings

        with warnings.catch_warnings():
            # Lance tables (results, LanceDBDataset, ParquetDataset) open themselves again in each worker.
            warnings.filterwarnings("ignore", message="lance is not fork-safe")
            iterator = iter(self.loader)
        try:
            for batch, skipped in iterator:
                if isinstance(batch, _WorkerFailure):
                    batch.raise_here()
                self.skips.add(skipped)
                if not batch:  # every object of the batch was skipped
                    continue
                yield _unwrap(batch) if self.num_workers > 0 else batch
        except DataError as error:  # the first data error of a stage: say how to see them all
            point_to_prepare(error)
            raise

    def __len__(self) -> int:
        return len(self.loader)


#: What DataLoader workers cost, measured with benchmarks/workers.py (h.infer() of 1x32x32 images, 0 against
#: 2 workers, on a shared 2-core machine): starting them, a pass (fork, first batch, shutdown: 0.47 s at
#: 1,000 in-memory objects), and per object (each batch through shared memory, and the CPU the workers take
#: from the model: 1.1 ms an object at 10,000 in-memory objects). Workers pay back only what reading costs
#: beyond that: a 3 ms FITS read per object saved 1.5 s at 1,000 objects.
WORKER_START_SECONDS = 0.5
WORKER_OBJECT_SECONDS = 0.001

#: Workers that ``data_loader.num_workers = "auto"`` starts when they pay.
AUTO_WORKERS = 2

#: Objects read (at most, and for at most :data:`_SAMPLE_SECONDS`) to time a dataset's reads.
_SAMPLE_GETS = 8
_SAMPLE_SECONDS = 0.2

_read_seconds: Any = None  # WeakKeyDictionary {provider: seconds an object}, made on first use
_said: set[int] = set()  # the choices of "auto" already logged in this process


def seconds_per_object(provider) -> float:
    """Seconds ``provider`` takes to read one object in this process: the mean over a few objects spread
    over it (after one untimed read, which opens its files), kept per provider. Cheap: at most
    :data:`_SAMPLE_GETS` objects and about :data:`_SAMPLE_SECONDS`. An object that cannot be read counts as
    free here (the pass itself raises or skips it, where the user sees it)."""
    global _read_seconds
    import time
    import weakref

    if _read_seconds is None:
        _read_seconds = weakref.WeakKeyDictionary()
    if provider in _read_seconds:
        return _read_seconds[provider]
    size = len(provider)
    rows = np.unique(np.linspace(0, size - 1, _SAMPLE_GETS + 1).astype(np.int64)) if size else []
    timed, elapsed = 0, 0.0
    try:
        for position, row in enumerate(rows):
            start = time.perf_counter()
            provider.__getitems__([int(row)])
            if position:  # the first read opens files and tables: the pass pays that once either way
                timed += 1
                elapsed += time.perf_counter() - start
                if elapsed > _SAMPLE_SECONDS:
                    break
    except Exception:  # noqa: BLE001 -- the pass itself raises it, or skips the object
        pass
    finally:
        provider.take_skipped()  # objects skipped while timing are counted by the pass itself
    seconds = elapsed / timed if timed else 0.0
    _read_seconds[provider] = seconds
    return seconds


def auto_workers(provider, sampler) -> int:
    """The workers ``data_loader.num_workers = "auto"`` starts for one pass of ``sampler`` over
    ``provider``: :data:`AUTO_WORKERS` when the estimated saving, objects x (seconds to read one in this
    process - :data:`WORKER_OBJECT_SECONDS`) - :data:`WORKER_START_SECONDS`, is positive; else none. The
    choice is logged once per process."""
    objects = len(sampler) if hasattr(sampler, "__len__") else len(provider)
    per_object = seconds_per_object(provider)
    saving = objects * (per_object - WORKER_OBJECT_SECONDS) - WORKER_START_SECONDS
    workers = AUTO_WORKERS if saving > 0 else 0
    if workers not in _said:
        _said.add(workers)
        logger.info(
            'data_loader.num_workers = "auto" chose %d worker(s): reading %d objects here is estimated at '
            "%.2f s (%.2g ms an object, timed on a few); %d workers pay when reading an object takes more than "
            "the ~%g ms they add to it and the pass saves more than the ~%g s that starting them costs. "
            "Set data_loader.num_workers to a number to choose.",
            workers,
            objects,
            objects * per_object,
            per_object * 1000,
            AUTO_WORKERS,
            WORKER_OBJECT_SECONDS * 1000,
            WORKER_START_SECONDS,
        )
    return workers


def loader_from_config(config, provider, sampler=None, skips: Skips | None = None) -> NumpyLoader:
    """A :class:`NumpyLoader` with ``[data_loader]`` batch_size, num_workers and pin_memory (``"auto"``:
    see :func:`auto_workers`; a number is used as given)."""
    settings = config["data_loader"]
    workers = settings["num_workers"]
    return NumpyLoader(
        provider,
        sampler,
        batch_size=int(settings["batch_size"]),
        num_workers=auto_workers(provider, sampler) if workers == "auto" else int(workers),
        pin_memory=bool(settings["pin_memory"]),
        skips=skips,
    )
