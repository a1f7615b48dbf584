"""``train``: train ``model.name`` on the train group, validating on the validate group every epoch."""

from __future__ import annotations

import argparse
from pathlib import Path

from hyrax.verbs.verb import Verb


def distributed_run_dir(config, verb: str):
    """(RunDir on rank 0 / None elsewhere, the run path on every rank, the Distribution)."""
    from hyrax.results.run_dir import RunDir
    from hyrax.training.distributed import broadcast_object, setup

    distribution = setup(config)  # under srun: torch.distributed's variables from Slurm's
    run = RunDir.create(config, verb) if distribution.is_main else None
    path = broadcast_object(str(run.path) if run else None, distribution)
    from hyrax.context import record_in_run

    record_in_run(results_dir=path, rank=distribution.rank, world_size=distribution.world_size)
    return run, Path(path), distribution


class TrainVerb(Verb):
    name = "train"
    summary = "Train the model (model.name) on the train group; checkpoints, metrics and weights go in a run directory."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue an interrupted train run in its directory, with the config it started with",
        )

    def run(self, resume: str | Path | None = None, trace: int | None = None):
        """Train; return the model, with ``final_training_metrics`` and ``final_validation_metrics``.

        ``resume``: an interrupted train run directory to continue from its last checkpoint, in place, with
        the configuration it started with (a config that sets other values is refused).
        ``trace=N``: one epoch of one batch of N objects, recorded; returns a :class:`hyrax.trace.TraceResult`."""
        if trace:
            from hyrax.trace import TraceContext, get_trace

            if resume is not None:
                raise ValueError("train(trace=...) traces a new run: leave out resume.")
            with TraceContext(trace, self.config, ("train", "validate", "test")):
                self.run()
                return get_trace()
        from hyrax.training.checkpoints import check_resumable
        from hyrax.training.loop import Training, TrainingInterrupted

        if resume is not None:
            from hyrax.training.resume import open_resumed

            run, self.config, path, distribution = open_resumed(self.config, resume)
        else:
            check_resumable(self.config)  # a resume that cannot work fails before a run directory is made
            run, path, distribution = distributed_run_dir(self.config, self.name)
        try:
            model = Training(self.config, path, distribution).run()
        except TrainingInterrupted as stop:
            if run is not None:  # stopped, not failed: it can be continued
                run.mark_stopped(interruption=str(stop))
            raise
        except BaseException as error:
            if run is not None:
                run.mark_failed(f"{type(error).__name__}: {error}")
            raise
        if run is not None:
            run.mark_complete(skipped=getattr(model, "skipped", 0))
        model.run_dir = path
        return model

    def run_cli(self, args: argparse.Namespace) -> int:
        model = self.run(args.resume)
        metrics = {**model.final_training_metrics, **model.final_validation_metrics}
        print(", ".join(f"{k} {v:.5g}" for k, v in metrics.items()))
        print(f"weights and checkpoints: {model.run_dir}")
        if getattr(model, "skipped", 0):
            print(
                f'{model.skipped:,} object(s) skipped (data_set.on_bad_object = "skip"): listed in '
                f"{model.run_dir / 'skipped_objects.csv'}"
            )
        return 0
