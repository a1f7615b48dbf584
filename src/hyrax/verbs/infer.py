"""``infer``: turn every object of the infer group into the model's output vector, in a results table."""

from __future__ import annotations

import argparse
from pathlib import Path

from hyrax.verbs.verb import Verb


class InferVerb(Verb):
    name = "infer"
    summary = "Run the trained model over the infer group; write object_id + vector rows (Lance) in a run directory."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted infer run")

    def run(self, resume: str | Path | None = None, trace: int | None = None):
        """Infer; return a :class:`~hyrax.results.store.ResultDataset`. ``resume``: an unfinished infer run
        directory to continue (with the configuration it was started with).

        ``trace=N``: the first N objects only, recorded; returns a :class:`hyrax.trace.TraceResult`."""
        if trace:
            from hyrax.trace import TraceContext, get_trace

            if resume is not None:
                raise ValueError("infer(trace=...) traces a new run: leave out resume.")
            with TraceContext(trace, self.config, ("infer",)):
                self.run()
                return get_trace()
        from hyrax.errors import RunBusyError
        from hyrax.results.store import ResultDataset
        from hyrax.training.distributed import broadcast_object, setup
        from hyrax.training.distributed_inference import check_processes
        from hyrax.training.inference import run_inference
        from hyrax.verbs.train import distributed_run_dir

        config = self.config
        if resume is not None:
            # Every process resumes from the run's own config; only rank 0 writes its status.
            path = Path(resume)
            run = _resumable(path, self.name)
            config = _snapshot(path)
            distribution = setup(config)  # under srun: torch.distributed's variables from Slurm's
            self.is_main = distribution.is_main
            busy = None
            if distribution.is_main:  # rank 0 writes the run's status: it is the run's one writer
                try:
                    run.lock(self.name)
                except RunBusyError as error:
                    busy = str(error)
            busy = broadcast_object(busy, distribution)
            if busy is not None:
                raise RunBusyError(busy)
            if broadcast_object(run.is_complete, distribution):
                run.unlock()
                return ResultDataset(config, path)
            check_processes(path, distribution.world_size)
            run = run if distribution.is_main else None
            if run is not None:
                run.mark_running()
        else:
            run, path, distribution = distributed_run_dir(config, self.name)
            self.is_main = distribution.is_main
        try:
            summary = run_inference(config, path, distribution, resume=resume is not None)
        except BaseException as error:
            if run is not None:
                run.mark_failed(f"{type(error).__name__}: {error}")
            raise
        if run is not None:
            run.mark_complete(results=summary.results, skipped=summary.skipped)
        broadcast_object(None, distribution)  # every rank returns the run once rank 0 marked it complete
        self.summary = summary
        self.message = summary.message(path)
        return ResultDataset(config, path)

    def run_cli(self, args: argparse.Namespace) -> int:
        results = self.run(args.resume)
        if not getattr(self, "is_main", True):  # under torchrun rank 0 reports for all
            return 0
        print(f"{len(results)} results of shape {results.shape} in {results.table_path}")
        summary = getattr(self, "summary", None)
        if summary is not None and summary.skipped:
            print(
                f'{summary.skipped:,} object(s) skipped (data_set.on_bad_object = "skip"): listed in '
                f"{results.data_location / 'skipped_objects.csv'}"
            )
        return 0


def _resumable(path: Path, verb: str):
    """The run directory ``path`` to resume, which must be a run of ``verb``."""
    from hyrax.errors import ResultsError
    from hyrax.results.run_dir import STATUS_FILE, RunDir

    if not (path / STATUS_FILE).is_file():
        raise ResultsError(f"--resume {path}: not a Hyrax run directory (no {STATUS_FILE}).")
    run = RunDir(path)
    if run.status.get("verb") != verb:
        raise ResultsError(
            f"--resume {path}: that is a {run.status.get('verb')} run, not a{'n' if verb[0] in 'aeiou' else ''} {verb} run."
        )
    return run


def _snapshot(path: Path):
    from hyrax.config import ConfigManager

    return ConfigManager(path / "runtime_config.toml").config
