"""``to_onnx``: export the latest (or a given) trained model to ONNX and check it against torch."""

from __future__ import annotations

import argparse

import numpy as np

from hyrax.verbs.verb import Verb


class ToOnnxVerb(Verb):
    name = "to_onnx"
    summary = (
        "Export the latest trained model (or onnx.input_model_directory) to ONNX, checked against torch."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-i",
            "--input-dir",
            "--input-model-directory",  # the published name, as onnx.input_model_directory
            dest="input_model_directory",
            metavar="TRAIN_RUN",
            help="a train run (default: the latest)",
        )

    def run(self, input_model_directory=None):
        """Export; return the run directory holding model.onnx. The check's result is logged and saved.

        ``input_model_directory``: the train run to export (onnx.input_model_directory; default: latest)."""
        self.override(onnx__input_model_directory=input_model_directory)
        import tomlkit
        import torch

        from hyrax.config import get_setting
        from hyrax.models.model import to_torch
        from hyrax.models.onnx import OnnxError, OnnxModel, copy_prepare_inputs, export
        from hyrax.results.run_dir import write_text_atomic
        from hyrax.training.inference import infer_provider, load_model, weights_location

        config = self.config
        provider, indices = infer_provider(config)
        weights = weights_location(config, "onnx.input_model_directory")
        model, prepare = load_model(config, provider, int(indices[0]), weights)
        batch = provider.collate([provider[int(i)] for i in indices[:8]])
        prepared = prepare(batch)
        tolerance = float(config["onnx"]["tolerance"])
        with self.create_run_dir("onnx") as run:
            exported = export(model, prepared, run.path, get_setting(config, "onnx.opset_version"))
            copy_prepare_inputs(weights.parent, run.path)
            from hyrax.training.inference import outputs_to_numpy

            with torch.no_grad():
                expected = outputs_to_numpy(model.infer_batch(to_torch(prepared)))
            got = OnnxModel(run.path).infer(batch)
            difference = _difference(got, expected)
            verdict = "agree" if difference <= tolerance else "DISAGREE"
            write_text_atomic(
                run.path / "onnx_check.toml",
                tomlkit.dumps(
                    {
                        "weights": str(weights),
                        "exporter": exported.exporter,
                        **({"dynamo_reason": exported.reason} if exported.reason else {}),
                        "max_abs_difference": difference,
                        "tolerance": tolerance,
                        "agree": difference <= tolerance,
                    }
                ),
            )
            if difference > tolerance:
                raise OnnxError(
                    f"ONNX and torch outputs differ by up to {difference:.3g} (onnx.tolerance = {tolerance}) on "
                    f"{len(batch['object_id'])} objects: the export is not faithful."
                )
        self.message = f"ONNX and torch {verdict}: max |difference| {difference:.3g} <= {tolerance} on {len(batch['object_id'])} objects"
        import logging

        logging.getLogger(__name__).info(self.message)
        return run.path

    def run_cli(self, args: argparse.Namespace) -> int:
        path = self.run(args.input_model_directory)
        print(self.message)
        print(f"model.onnx and prepare_inputs.py in {path}")
        return 0


def _difference(got, expected) -> float:
    """The largest |ONNX - torch| over the output (each key of a dict output)."""
    if isinstance(expected, dict):
        if not isinstance(got, dict) or list(got) != list(expected):
            from hyrax.models.onnx import OnnxError

            gives = f"the outputs {list(got)}" if isinstance(got, dict) else "one array"
            raise OnnxError(
                f"The ONNX export gives {gives}; infer_batch returns the keys {list(expected)}: export again."
            )
        return max(float(np.max(np.abs(got[key] - expected[key]), initial=0.0)) for key in expected)
    return float(np.max(np.abs(got - expected)))
