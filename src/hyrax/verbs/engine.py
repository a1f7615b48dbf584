"""``engine``: run an exported ONNX model with onnxruntime over the infer group, writing the same
results table as ``infer``, through the same loop (resumable, skips recorded, progress and stats)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hyrax.verbs.verb import Verb, deprecated_option


class EngineVerb(Verb):
    name = "engine"
    summary = "Run the latest ONNX export (or engine.model_directory) over the infer group with onnxruntime."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-i",
            "--input-dir",
            "--model-directory",  # the published name, as engine.model_directory
            dest="model_directory",
            metavar="ONNX_RUN",
            help="a to_onnx run (default: the latest)",
        )
        # -m is a fitted model file in reduce_dimensions and umap.
        parser.add_argument(
            "-m", dest="model_directory", action=deprecated_option("-i/--input-dir"), help=argparse.SUPPRESS
        )
        parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted engine run")

    def run(self, model_directory=None, resume: str | Path | None = None):
        """Return a :class:`~hyrax.results.store.ResultDataset` of the ONNX model's outputs.

        ``model_directory``: the to_onnx run to use (engine.model_directory; default: the latest).
        ``resume``: an unfinished engine run to continue, with the export and configuration it started with.
        """
        from hyrax.training.distributed import Distribution, refuse_several_processes

        refuse_several_processes(self.name)  # under torchrun or srun -n N each would redo the whole run
        from hyrax.config import get_setting
        from hyrax.models.onnx import OnnxModel
        from hyrax.results.run_dir import resolve_run
        from hyrax.results.store import ResultDataset
        from hyrax.training.inference import run_inference
        from hyrax.verbs.infer import _resumable, _snapshot

        config = self.config
        if resume is not None:
            path = Path(resume)
            run = _resumable(path, self.name).lock(self.name)
            config = _snapshot(path)
            if run.is_complete:
                run.unlock()
                return ResultDataset(config, path)
            run.mark_running()
        else:
            self.override(engine__model_directory=model_directory)
            directory = get_setting(config, "engine.model_directory") or resolve_run(config, "to_onnx")
            config["engine"]["model_directory"] = str(Path(directory).resolve())  # pinned in the snapshot
            run = self.create_run_dir()
            path = run.path
        try:
            runner = OnnxModel(config["engine"]["model_directory"]).infer
            summary = run_inference(
                config, path, Distribution(), resume=resume is not None, runner=runner, stage=self.name
            )
        except BaseException as error:
            run.mark_failed(f"{type(error).__name__}: {error}")
            raise
        run.mark_complete(results=summary.results, skipped=summary.skipped)
        self.summary = summary
        return ResultDataset(config, path)

    def run_cli(self, args: argparse.Namespace) -> int:
        results = self.run(args.model_directory, args.resume)
        print(f"{len(results)} results of shape {results.shape} in {results.table_path}")
        print(self.summary.message(results.data_location))
        return 0
