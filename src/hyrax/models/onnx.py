"""ONNX: export a trained model's ``infer_batch`` and run it with onnxruntime.

The export (``model.onnx``, with its weights in ``model.onnx.data``) takes what ``prepare_inputs``
returns and gives what ``infer_batch`` gives, with a free batch dimension; ``prepare_inputs.py`` is
copied beside it, so the ONNX model needs neither Hyrax's model classes nor torch to run.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.errors import HyraxError

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"


class OnnxError(HyraxError, RuntimeError):
    """Export failed, or the exported model disagrees with torch."""


def _inputs(prepared: Any) -> list[np.ndarray]:
    items = prepared if isinstance(prepared, tuple | list) else (prepared,)
    return [np.ascontiguousarray(item) for item in items if item is not None]


def export(model, prepared_batch: Any, directory: Path, opset_version: int | None = None) -> Path:
    """Write ``directory/model.onnx`` for ``model.infer_batch`` on inputs shaped like ``prepared_batch``."""
    import torch

    from hyrax.plugins import optional_import

    optional_import("onnxscript", "onnx", "ONNX export")
    arrays = _inputs(prepared_batch)
    single = not isinstance(prepared_batch, tuple | list)

    class InferBatch(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, *inputs):
            return self.wrapped.infer_batch(inputs[0] if single else tuple(inputs))

    path = directory / ONNX_FILE
    batch = torch.export.Dim("batch")
    kwargs: dict[str, Any] = {
        "dynamo": True,
        "input_names": [f"input_{i}" for i in range(len(arrays))],
        "output_names": ["output"],
        # forward(*inputs) has one (variadic) parameter: its shapes are one tuple, one entry per input.
        "dynamic_shapes": (tuple({0: batch} for _ in arrays),),
    }
    if opset_version is not None:
        kwargs["opset_version"] = int(opset_version)
    tensors = tuple(torch.from_numpy(a) for a in arrays)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), torch.no_grad():
            torch.onnx.export(InferBatch(model.eval()).eval(), tensors, str(path), **kwargs)
    except Exception as error:  # the exporter raises many kinds; all mean "cannot export this model"
        raise OnnxError(
            f"ONNX export of {type(model).__name__} failed: {type(error).__name__}: {str(error)[:800]}. Operations "
            f"that ONNX cannot express (data-dependent Python control flow, custom ops) need rewriting in infer_batch."
        ) from error
    logger.debug(chatter.getvalue())
    _check_dynamic_batch(path, type(model).__name__, len(arrays[0]))
    return path


def _check_dynamic_batch(path: Path, model_name: str, example_batch: int) -> None:
    """The exported graph must take any batch size: a fixed one fails later, in ``engine``."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    fixed = [
        i.name
        for i in graph.input
        if i.type.tensor_type.shape.dim[:1] and i.type.tensor_type.shape.dim[0].HasField("dim_value")
    ]
    if fixed:
        path.unlink(missing_ok=True)
        raise OnnxError(
            f"ONNX export of {model_name}: infer_batch fixes the batch size to {example_batch} (inputs "
            f"{', '.join(fixed)}), so the export would only take batches of exactly that size. Python's "
            f"len(x) or int(x.shape[0]) fix it when traced: write x.shape[0] (or reshape(x.shape[0], -1))."
        )


class OnnxModel:
    """An exported model with its prepare_inputs: ``OnnxModel(dir).infer(numpy_batch_dict)`` -> numpy."""

    def __init__(self, directory: str | Path, threads: int | None = None):
        from hyrax.plugins import optional_import

        onnxruntime = optional_import("onnxruntime", "onnx", "Running an ONNX model")

        from hyrax.models.model import load_prepare_inputs

        self.directory = Path(directory)
        path = self.directory / ONNX_FILE
        if not path.is_file():
            raise OnnxError(f"No {ONNX_FILE} in {self.directory}: run `hyrax to_onnx` first.")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.prepare = load_prepare_inputs(self.directory)
        if self.prepare is None:
            raise OnnxError(f"No prepare_inputs.py in {self.directory}; export again with `hyrax to_onnx`.")

    def run_prepared(self, prepared: Any) -> np.ndarray:
        arrays = _inputs(prepared)
        return self.session.run(None, dict(zip(self.input_names, arrays, strict=True)))[0]

    def infer(self, batch) -> np.ndarray:
        return self.run_prepared(self.prepare(batch))


def copy_prepare_inputs(weights_directory: Path, directory: Path) -> None:
    """Copy prepare_inputs.py beside the export, with its digest (the file is refused if it changed)."""
    from hyrax.models.model import load_prepare_inputs, write_prepare_inputs

    source = weights_directory / "prepare_inputs.py"
    if source.is_file():
        load_prepare_inputs(weights_directory)  # its digest is checked before it is passed on
        write_prepare_inputs(directory, source.read_text())
