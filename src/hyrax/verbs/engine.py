"""``engine``: run an exported ONNX model with onnxruntime over the infer group, writing the same
results table as ``infer``."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb


class EngineVerb(Verb):
    name = "engine"
    summary = "Run the latest ONNX export (or engine.model_directory) over the infer group with onnxruntime."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-m", "--model-directory", metavar="ONNX_RUN", help="a to_onnx run (default: the latest)"
        )

    def run(self, model_directory=None):
        """Return a :class:`~hyrax.results.store.ResultDataset` of the ONNX model's outputs.

        ``model_directory``: the to_onnx run to use (engine.model_directory; default: the latest)."""
        self.override(engine__model_directory=model_directory)
        from hyrax.config import get_setting
        from hyrax.datasets.loader import Skips, loader_from_config
        from hyrax.models.onnx import OnnxModel
        from hyrax.progress import Progress
        from hyrax.results.run_dir import resolve_run
        from hyrax.results.store import ResultDataset, ResultWriter
        from hyrax.training.inference import SKIPPED_FILE, RowSampler, infer_provider

        directory = get_setting(self.config, "engine.model_directory") or resolve_run(self.config, "to_onnx")
        model = OnnxModel(directory)
        provider, indices = infer_provider(self.config)
        run = self.create_run_dir()
        try:
            probe = model.infer(provider.collate([provider[int(indices[0])]]))
            provider.take_skipped()
            self.skips = Skips(run.path / SKIPPED_FILE)
            loader = loader_from_config(self.config, provider, RowSampler(indices), self.skips)
            with (
                ResultWriter(run.path, probe.shape[1:], probe.dtype) as writer,
                Progress("engine", total=len(indices)) as progress,
            ):
                for batch in loader:
                    writer.write(batch["object_id"], model.infer(batch))
                    progress.update(len(batch["object_id"]))
        except BaseException as error:
            run.mark_failed(f"{type(error).__name__}: {error}")
            raise
        run.mark_complete(results=writer.committed, skipped=self.skips.count)
        return ResultDataset(self.config, run.path)

    def run_cli(self, args: argparse.Namespace) -> int:
        results = self.run(args.model_directory)
        print(f"{len(results)} results of shape {results.shape} in {results.table_path}")
        if self.skips.count:
            print(
                f'{self.skips.count:,} object(s) skipped (data_set.on_bad_object = "skip"): listed in '
                f"{self.skips.path}"
            )
        return 0
