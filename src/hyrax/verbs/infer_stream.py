"""``infer_stream``: serve the trained model on an alert stream; results appended as alerts arrive."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from hyrax.stream.session import InferStreamSession
from hyrax.verbs.verb import Verb

__all__ = ["InferStreamSession", "InferStreamVerb"]


class InferStreamVerb(Verb):
    name = "infer_stream"
    summary = "Run the trained model on a stream (Kafka alerts or any stream dataset), each result written once (resumable)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--resume", metavar="RUN_DIR", help="continue a stopped or killed infer_stream run"
        )
        parser.add_argument("--max-alerts", type=int, help="stop after this many alerts")
        parser.add_argument(
            "--idle-timeout", type=float, help="stop after this many seconds without an alert"
        )

    def run(
        self,
        resume: str | Path | None = None,
        max_alerts: int | None = None,
        idle_timeout: float | None = None,
        stop: threading.Event | None = None,
        sample_batch: dict | None = None,
    ):
        """With a way to stop (``max_alerts``, ``idle_timeout`` or a ``stop`` event; the command line's SIGTERM
        and Ctrl-C): consume, infer and append until then, and return a
        :class:`~hyrax.stream.serve.StreamSummary` (``.to_pandas()``: the results so far).

        Without one: an :class:`~hyrax.stream.session.InferStreamSession` to drive from your loop::

            with h.infer_stream() as session:
                for batch, results in session:
                    ...

        (``sample_batch``: a batch that sizes the model for a session fed with ``session.process(batch)``,
        when no stream is configured.) ``resume``: the run directory of an earlier session to continue, with
        its config."""
        from hyrax.config import ConfigManager
        from hyrax.stream.serve import StreamServer
        from hyrax.training.inference import weights_location
        from hyrax.verbs.infer import _resumable

        if resume is not None:
            run = _resumable(Path(resume), self.name)
            config = ConfigManager(run.path / "runtime_config.toml").config
            run.lock(self.name)
            run.mark_running()
            weights = _pinned_weights(run.path)
        else:
            config = self.config
            weights = weights_location(config, "infer_stream.model_weights_file")
            run = self.create_run_dir()
            _pin_weights(run.path, weights)
        if max_alerts is None and idle_timeout is None and stop is None:
            try:
                return InferStreamSession(config, run, weights, sample_batch)
            except BaseException as error:
                run.mark_failed(f"{type(error).__name__}: {error}")
                raise
        try:
            server = StreamServer(config, run.path, weights, stop)
            summary = server.run(max_alerts, idle_timeout)
        except BaseException as error:
            run.mark_failed(f"{type(error).__name__}: {error}")
            raise
        run.mark_stopped(alerts=summary.alerts, skipped=summary.skipped, stopped_by=summary.stopped_by)
        return summary

    def run_cli(self, args: argparse.Namespace) -> int:
        stop = threading.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())
        summary = self.run(args.resume, args.max_alerts, args.idle_timeout, stop)
        print(summary)
        print(f"results: {summary.run_dir / 'stream_results.lance'}")
        return 0


def _pin_weights(run_dir: Path, weights: Path) -> None:
    import tomlkit

    from hyrax.results.run_dir import write_text_atomic
    from hyrax.stream.serve import INPUTS
    from hyrax.training.inference import file_sha256

    pins = {"weights": str(Path(weights).resolve()), "weights_sha256": file_sha256(weights)}
    write_text_atomic(run_dir / INPUTS, tomlkit.dumps(pins))


def _pinned_weights(run_dir: Path) -> Path:
    """The weights the run started with; an error if they changed since."""
    import tomllib

    from hyrax.errors import ResultsError
    from hyrax.stream.serve import INPUTS
    from hyrax.training.inference import file_sha256

    with open(run_dir / INPUTS, "rb") as handle:
        pins = tomllib.load(handle)
    weights = Path(pins["weights"])
    if not weights.is_file() or file_sha256(weights) != pins["weights_sha256"]:
        raise ResultsError(
            f"{run_dir} was started with the weights {weights} (sha256 {pins['weights_sha256'][:12]}...), which are "
            f"gone or changed. Start a new infer_stream run for other weights."
        )
    return weights
