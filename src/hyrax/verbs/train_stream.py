"""``train_stream``: train the model on an open-ended stream; a session in a notebook, a loop on the command
line. The library is :mod:`hyrax.stream.training`."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from hyrax.stream.training import TrainStreamSession
from hyrax.verbs.verb import Verb

__all__ = ["TrainStreamSession", "TrainStreamVerb"]


class TrainStreamVerb(Verb):
    name = "train_stream"
    summary = "Train the model on a stream ([data_request.train_stream]), no epochs; weights saved as it goes (resumable)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--resume", metavar="RUN_DIR", help="continue a stopped or killed train_stream run"
        )
        parser.add_argument("--max-batches", type=int, help="stop after this many batches")
        parser.add_argument(
            "--idle-timeout", type=float, help="stop after this many seconds without a sample"
        )

    def run(self, resume: str | Path | None = None) -> TrainStreamSession:
        """A :class:`~hyrax.stream.training.TrainStreamSession` training ``model.name`` on the stream of
        ``[data_request.train_stream]``, in a new run directory (``resume``: the run directory of a stopped or
        killed session, continued from its last save with its own config)::

            with h.train_stream() as session:
                for batch, metrics in session:
                    ...

        Weights and ``stream_checkpoint.pt`` are saved every ``train_stream.save_weights_every`` batches and
        when the session closes; ``session.close()`` returns the model."""
        from hyrax.stream.training import open_run

        run, config, resumed = open_run(self.config, resume)
        try:
            return TrainStreamSession(config, run, resumed)
        except BaseException as error:
            run.mark_failed(f"{type(error).__name__}: {error}")
            raise

    def run_cli(self, args: argparse.Namespace) -> int:
        session = self.run(args.resume)
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: session.stop())
        with session:
            stopped_by = session.run(args.max_batches, args.idle_timeout)
        print(f"{session.batches:,} batches ({session.samples:,} objects) trained; stopped by {stopped_by}")
        print(f"weights: {session.weights_file}")
        return 0
