"""``infer_stream`` as a session: the trained model over any stream dataset, batch by batch in your loop.

>>> # with h.infer_stream() as session:        # [data_request.infer_stream]: one stream dataset
>>> #     for batch, results in session:        # results: numpy, one row per object of the batch
>>> #         ...
>>> # summary = session.close()                 # (the with block closes it too)

The session uses the same stages as the command line's :class:`~hyrax.stream.serve.StreamServer`, one
batch at a time in the caller's thread: what this run already wrote is dropped (by Kafka position, or
by id for a stream without positions), the rest inferred and, with ``infer_stream.save_model_output =
true``, appended once to ``stream_results.lance``; then the batch's Kafka offsets are committed (durable
first, committed after, so a kill loses nothing and a resumed session writes nothing twice). With
``save_model_output = false`` nothing is kept, and a batch's offsets are committed when the loop asks for
the next batch (the one before is done with).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.context import use_context

logger = logging.getLogger(__name__)


def session_context(verb: str, config: Mapping, run_dir: Path):
    """The run context a session re-enters: the current one (its verb's), with the session's config and
    run directory; a fresh one for a session made outside a verb."""
    from hyrax.context import RunContext, get_context

    return RunContext(
        {
            "verb": verb,
            "rank": 0,
            "world_size": 1,
            **get_context(),
            "config": config,
            "results_dir": Path(run_dir),
        }
    )


class InferStreamSession:
    """Iterate for ``(batch, results)``; or call :meth:`process` with batches of your own. :meth:`close`
    (or the end of a ``with`` block) returns the :class:`~hyrax.stream.serve.StreamSummary` of what was
    written (``.to_pandas()``), or None when ``save_model_output`` is false.

    Not thread-safe, except :meth:`stop`, which may be called from any thread."""

    def __init__(self, config: Mapping, run, weights: Path, sample_batch: Mapping | None = None):
        from hyrax.stream.serve import StreamServer, StreamSummary

        self._run = run
        self.run_dir: Path = run.path
        self.save = bool(get_setting(config, "infer_stream.save_model_output"))
        self._stop = threading.Event()
        # The run context of the verb that made this session (hyrax.context), entered again around the
        # model's work: the caller's loop runs after the verb has returned.
        self._context = session_context("infer_stream", config, run.path)
        with use_context(self._context):
            self._server = StreamServer(config, run.path, Path(weights), self._stop, sample_batch)
        self.summary = StreamSummary(run_dir=run.path)
        self._pending: list[tuple[str, int, int]] = []  # handed out, not committed (save_model_output false)
        self._closed = False

    @property
    def provider(self):
        return self._server.provider

    def __iter__(self) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        """``(batch, results)`` for each batch of the stream that holds objects this run has not written,
        until the stream ends or :meth:`stop` is called."""
        from hyrax.stream.serve import _select

        if self._closed:
            raise RuntimeError("InferStreamSession is closed.")
        if self.provider is None:
            raise RuntimeError(
                "This InferStreamSession has no stream to iterate: configure [data_request.infer_stream], or "
                "feed batches with process(batch)."
            )
        for stream in self.provider.batches(self._stop):
            self._commit(self._pending)  # the loop asked for another batch: the one before is done with
            self._pending = []
            if not len(stream) and not stream.skipped:
                continue
            item = self._server.admit(stream, self.summary)
            with use_context(self._context):
                self._server.infer(item)
            self._finish(item)
            if item.outputs is not None:
                yield _select(stream.batch, item.keep), item.outputs

    @property
    def data_loader(self) -> Iterator[dict[str, Any]]:
        """The stream's batches, not yet inferred, for the published by-hand loop:
        ``for batch in session.data_loader: results = session.process(batch)``. A Kafka batch's offsets are
        committed when the next batch is asked for (the one before is done with); the batch in hand when the
        session closes is not, and comes again to the next session."""
        if self.provider is None:
            raise RuntimeError(
                "This InferStreamSession has no stream: configure [data_request.infer_stream], or feed "
                "batches with process(batch)."
            )
        return self._unprocessed_batches()

    def _unprocessed_batches(self) -> Iterator[dict[str, Any]]:
        held: list = []  # the batch handed out: done with once the next one is asked for
        for stream in self.provider.batches(self._stop):
            self._commit(held)
            held = []
            if not len(stream):
                continue
            held = list(stream.positions)
            yield stream.batch

    def process(self, batch: Mapping[str, Any]) -> np.ndarray | dict[str, np.ndarray]:
        """The model's results for ``batch`` (``{"object_id": ids, <name>: {field: array}}``), one row per
        object (a dict of such arrays when ``infer_batch`` returns a dict); with ``save_model_output``,
        the objects this run has not written yet are written."""
        from hyrax.datasets.streaming import StreamBatch
        from hyrax.stream.serve import select_outputs, stream_outputs

        if self._closed:
            raise RuntimeError("InferStreamSession is closed. Cannot call process() after close().")
        ids = [str(i) for i in np.asarray(batch["object_id"])]
        stream = StreamBatch(dict(batch), [("", 0, -1)] * len(ids), ids, [-1] * len(ids))
        with use_context(self._context):
            outputs = stream_outputs(self._server.runner(stream.batch))
        item = self._server.admit(stream, self.summary)
        item.outputs = select_outputs(outputs, item.keep) if item.keep.any() else None
        self._finish(item)
        return outputs

    def _finish(self, item) -> None:
        if self.save:
            self._server.write(item, self.summary)
            self._commit(item.positions)
        else:
            self.summary.skipped += len(item.skipped)
            self._pending = item.positions

    def _commit(self, positions) -> None:
        commit = getattr(getattr(self.provider, "dataset", None), "commit", None)
        # Only positions a stream gave (topic, partition, offset); a batch fed to process() by hand has none.
        positions = [p for p in positions if p and p[0]]
        if positions and callable(commit):
            commit(positions)

    def stop(self) -> None:
        """Ask the stream to stop: iteration ends after the batch in hand (any thread may call this)."""
        self._stop.set()

    def close(self, error: BaseException | None = None):
        """End the session: close the stream, mark the run stopped (resumable), return the summary (None
        when nothing was saved). Calling it again returns the same."""
        if not self._closed:
            self._closed = True
            self.stop()
            try:
                if error is None:
                    self._commit(self._pending)
            finally:
                close = getattr(getattr(self.provider, "dataset", None), "close", None)
                if callable(close):
                    close()
            if error is None:
                self.summary.stopped_by = "the session closed"
                self._run.mark_stopped(alerts=self.summary.alerts, skipped=self.summary.skipped)
            else:
                self._run.mark_failed(f"{type(error).__name__}: {error}")
        return self.summary if self.save else None

    def __enter__(self) -> InferStreamSession:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        failed = error is not None and not isinstance(error, KeyboardInterrupt | GeneratorExit)
        self.close(error if failed else None)
        return False

    def __repr__(self) -> str:
        return f"InferStreamSession({self.run_dir}, {self.summary.alerts} objects, {'closed' if self._closed else 'open'})"
