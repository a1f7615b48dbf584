"""``train_stream``: training on an open-ended stream (no epochs, no splits), driven as a session.

>>> # with h.train_stream() as session:          # [data_request.train_stream]: one stream dataset
>>> #     for batch, metrics in session:          # metrics None for a batch under min_batch_size
>>> #         if metrics and metrics["loss"] < 0.01:
>>> #             break
>>> # model = session.close()                     # (the with block closes it too)

A session is one writer of a run directory like any other (config snapshot, status, the writer's lock).
Every ``train_stream.save_weights_every`` batches, and on a clean close, it writes the weights file
(``train_stream.weights_filename``, what infer reads) and ``stream_checkpoint.pt`` (model, optimizer,
scheduler, batches trained), each atomically; then it commits the Kafka offsets of the batches trained
since the last save. A killed session (kill -9, a crash) continues with ``hyrax train_stream --resume
RUN_DIR`` (``h.train_stream(resume=RUN_DIR)``) from that save, with the run's own config, and a Kafka
stream hands it again what it trained on after the save. A session that fails (a NaN loss) saves nothing
more: its last save stays the one to resume from.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hyrax.config import get_setting
from hyrax.errors import ConfigError, ResultsError

logger = logging.getLogger(__name__)

VERB = "train_stream"
_FLUSH_SECONDS = 10.0  # metrics are sent to MLflow/TensorBoard at each save, and at least this often


def open_run(config: Mapping, resume: str | Path | None):
    """(the locked RunDir, the config it runs with, whether it continues an earlier session)."""
    from hyrax.config import ConfigManager
    from hyrax.results.run_dir import CONFIG_FILE, STATUS_FILE, RunDir

    if resume is None:
        return RunDir.create(config, VERB), config, False
    path = Path(resume).expanduser()
    if not (path / STATUS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise ResultsError(f"train_stream --resume {path}: not a Hyrax run directory (no {STATUS_FILE}).")
    run = RunDir(path)
    verb = run.status.get("verb")
    if verb != VERB:
        raise ResultsError(
            f"train_stream --resume {path}: that is a{'n' if str(verb)[:1] in 'aeiou' else ''} {verb} run."
        )
    run.lock(VERB)  # a second writer is refused here, naming the first
    run.mark_running()
    return run, ConfigManager(path / CONFIG_FILE).config, True


class TrainStreamSession:
    """A model training on a stream: iterate it for ``(batch, metrics)``, or call :meth:`train_batch`
    with batches of your own; :meth:`close` (or the end of a ``with`` block) saves and returns the model.

    Not thread-safe, except :meth:`stop`, which may be called from any thread."""

    def __init__(self, config: Mapping, run, resumed: bool = False):
        import torch

        from hyrax.datasets.streaming import StreamProvider

        self._config, self._run = config, run
        self.run_dir: Path = run.path
        self.batches = 0  # trained, over every session of the run
        self.samples = 0
        self._saved_at = -1
        self._stop = threading.Event()  # also set by the provider at the end of a finite stream
        self._stop_asked = False
        self._closed = False
        self._uncommitted: list[tuple[str, int, int]] = []
        self._metrics: list[tuple[int, dict[str, float]]] = []
        self._flushed = time.monotonic()
        self._settings = config[VERB]
        self.provider = StreamProvider(config, VERB) if VERB in config.get("data_request", {}) else None
        from hyrax.context import use_context
        from hyrax.stream.session import session_context

        # The verb's run context (hyrax.context), entered again around the model's work: the caller's
        # loop runs after the verb has returned.
        self._context = session_context(VERB, config, run.path)
        try:
            self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
            with use_context(self._context):
                self.model = self._build(resumed)
            from hyrax.training.tracking import Tracker

            self._tracker = Tracker(config, self.run_dir, type(self.model).__name__, VERB)
        except BaseException:
            self._close_stream()
            raise

    def _build(self, resumed: bool):
        from hyrax.models.model import (
            ModelContractError,
            check_model_contract,
            prepare_inputs_source,
            prepared_problem,
            write_prepare_inputs,
        )
        from hyrax.stream.serve import first_batch
        from hyrax.training.checkpoints import STREAM, load_checkpoint
        from hyrax.training.loop import model_class

        if self.provider is None:
            raise ConfigError(
                "train_stream reads [data_request.train_stream]: give it one stream dataset, for example\n"
                '[data_request.train_stream.alerts]\ndataset_class = "KafkaStreamDataset"\nfields = ["image"]'
            )
        cls = model_class(self._config)
        sample = first_batch(self.provider, self.run_dir)  # kept in the run: a resume sizes the model alike
        prepared = cls.prepare_inputs(sample)
        problem = prepared_problem(prepared)
        if problem:
            raise ModelContractError(f"Model {cls.__name__}: {problem}")
        model = cls(self._config, data_sample=prepared)
        model.to(self.device)
        checkpoint = self.run_dir / STREAM
        if resumed and checkpoint.is_file():
            state = load_checkpoint(checkpoint, model)
            self.batches, self.samples = state["batches"], state["samples"]
            self._saved_at = self.batches
            logger.info(
                "train_stream: resuming %s after batch %d (%s)", self.run_dir, self.batches, checkpoint
            )
        elif get_setting(self._config, f"{VERB}.model_weights_file") is not None:
            from hyrax.training.inference import weights_location

            weights = weights_location(self._config, f"{VERB}.model_weights_file")
            model.load(weights)
            logger.info("train_stream: starting from the weights %s", weights)
        check_model_contract(model, sample)
        model.train()
        write_prepare_inputs(self.run_dir, prepare_inputs_source(cls))
        self._prepare = cls.prepare_inputs
        return model

    # -- driving it ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[dict[str, Any], dict[str, float] | None]]:
        """``(batch, metrics)`` for each batch of the stream, trained on as it arrives (metrics None: the
        batch was under ``min_batch_size``), until the stream ends or :meth:`stop` is called."""
        for stream in self._stream_batches():
            if len(stream) or stream.skipped:
                metrics = self._train(stream)
                if len(stream):
                    yield stream.batch, metrics

    def run(self, max_batches: int | None = None, idle_timeout: float | None = None) -> str:
        """Train until the stream ends, :meth:`stop`, ``max_batches`` more batches, or ``idle_timeout``
        seconds without a sample; return what stopped it (the command line's loop)."""
        started, last = self.batches, time.monotonic()
        for stream in self._stream_batches():
            if len(stream) or stream.skipped:
                last = time.monotonic()
                self._train(stream)
                if max_batches is not None and self.batches - started >= max_batches:
                    self.stop()
                    return f"max_batches = {max_batches}"
            elif idle_timeout is not None and time.monotonic() - last > idle_timeout:
                self.stop()
                return f"no sample for {idle_timeout:g} s (idle_timeout)"
        return "a stop request (SIGTERM, Ctrl-C or stop())" if self._stop_asked else "the end of the stream"

    def _stream_batches(self):
        if self._closed:
            raise RuntimeError("TrainStreamSession is closed.")
        if self.provider is None:
            raise RuntimeError(
                "This TrainStreamSession has no stream to iterate: configure [data_request.train_stream], or "
                "feed batches with train_batch(batch)."
            )
        for stream in self.provider.batches(self._stop):
            if stream.skipped:
                logger.warning(
                    "train_stream: %d unreadable message(s) skipped: %s",
                    len(stream.skipped),
                    stream.skipped[0][3],
                )
            yield stream

    def _train(self, stream) -> dict[str, float] | None:
        # committed at the next save, which holds what this batch taught the model
        self._uncommitted.extend(list(stream.positions) + [s[:3] for s in stream.skipped])
        return self.train_batch(stream.batch) if len(stream) else None

    def train_batch(self, batch: Mapping[str, Any]) -> dict[str, float] | None:
        """One optimizer step on ``batch`` (``{"object_id": ids, <name>: {field: array}}``, as the stream's
        batches are); its metrics (``{"loss": ...}``), or None for a batch under ``min_batch_size``."""
        from hyrax.models.model import to_torch
        from hyrax.training.loop import TrainingError

        if self._closed:
            raise RuntimeError("TrainStreamSession is closed. Cannot call train_batch() after close().")
        size = len(batch["object_id"])
        minimum = get_setting(self._config, f"{VERB}.min_batch_size") or 1
        if size < int(minimum):
            logger.debug("train_stream: batch of %d under min_batch_size %s, not trained on", size, minimum)
            return None
        from hyrax.context import use_context

        with use_context(self._context):
            output = self.model.train_batch(to_torch(self._prepare(batch), self.device))
        if not isinstance(output, Mapping) or "loss" not in output:
            raise TrainingError(
                f"{type(self.model).__name__}.train_batch returned {type(output).__name__} without a 'loss': "
                f"return a dict such as {{'loss': loss.item()}}."
            )
        metrics = {
            k: float(v) for k, v in output.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if not math.isfinite(metrics["loss"]):
            raise TrainingError(
                f"train_stream stopped: the loss became {metrics['loss']} at batch {self.batches + 1}. Its last save "
                f"(batch {max(self._saved_at, 0)}) is kept; continue from it with "
                f"hyrax train_stream --resume {self.run_dir} once the data or learning rate is fixed."
            )
        self.batches += 1
        self.samples += size
        self._metrics.append((self.batches, {f"training_{k}": v for k, v in metrics.items()}))
        every = get_setting(self._config, f"{VERB}.save_weights_every")
        if every and self.batches % int(every) == 0:
            self.save_weights()
        elif time.monotonic() - self._flushed > _FLUSH_SECONDS:
            self._flush_metrics()
        return metrics

    # published name of train_batch
    process = train_batch

    # -- saving ----------------------------------------------------------------------------------
    @property
    def weights_file(self) -> Path:
        """The weights file this session writes (infer reads it, as a train run's)."""
        return self.run_dir / self._settings["weights_filename"]

    def save_weights(self, file_name_suffix: str = "") -> Path:
        """Write the weights file and the checkpoint (atomically), then commit the stream's offsets of what
        they hold; return the weights file. ``file_name_suffix``: a copy of the weights under
        ``<name>_<suffix>.pth`` instead (no checkpoint, no commit)."""
        from hyrax.training.checkpoints import save_stream_checkpoint

        path = self.weights_file
        if file_name_suffix:
            path = path.with_name(f"{path.stem}_{file_name_suffix}{path.suffix}")
            self.model.save(path)
            return path
        save_stream_checkpoint(self.run_dir, self.model, self.batches, self.samples)
        self.model.save(path)
        self._saved_at = self.batches
        commit = getattr(getattr(self.provider, "dataset", None), "commit", None)
        if callable(commit) and self._uncommitted:
            commit(self._uncommitted)
        self._uncommitted = []
        self._flush_metrics()
        logger.debug("train_stream: saved after %d batches", self.batches)
        return path

    def checkpoint(self, model_metrics: Mapping[str, float] | None = None) -> None:
        """Save now (the published call; ``model_metrics`` is accepted and not used: every save is kept)."""
        self.save_weights()

    def _flush_metrics(self) -> None:
        self._tracker.log_steps(self._metrics)
        self._metrics = []
        self._flushed = time.monotonic()

    # -- ending ----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the stream to stop: iteration ends after the batch in hand (any thread may call this)."""
        self._stop_asked = True
        self._stop.set()

    def _close_stream(self) -> None:
        close = getattr(getattr(self.provider, "dataset", None), "close", None)
        if callable(close):
            try:
                close()
            except Exception as error:  # noqa: BLE001 - the data source's teardown must not lose the save
                logger.warning("train_stream: closing the stream failed: %s", error)

    def close(self):
        """Save the weights and the checkpoint, mark the run stopped (it can be resumed: a stream has no
        end) and return the model. Calling it again returns the model."""
        if self._closed:
            return self.model
        self.stop()
        try:
            if self._saved_at != self.batches or self._uncommitted:
                self.save_weights()
        finally:
            self._closed = True
            self._close_stream()
        self._tracker.close("FINISHED")
        self._run.mark_stopped(batches=self.batches, samples=self.samples)
        logger.info(
            "train_stream: %d batches (%d objects) trained; weights in %s",
            self.batches,
            self.samples,
            self.run_dir,
        )
        self.model.run_dir = self.run_dir
        return self.model

    def _fail(self, error: BaseException) -> None:
        """End after an error: nothing more is saved (the last save is the one to resume from)."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        self._close_stream()
        self._flush_metrics()
        self._tracker.close("FAILED")
        self._run.mark_failed(f"{type(error).__name__}: {error}")

    def __enter__(self) -> TrainStreamSession:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, KeyboardInterrupt | GeneratorExit):
            self.close()  # stopped by hand: what was trained is good and saved
        else:
            self._fail(error)
        return False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"TrainStreamSession({self.run_dir}, {self.batches} batches, {state})"
