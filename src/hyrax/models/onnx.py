"""ONNX: export a trained model's ``infer_batch`` and run it with onnxruntime.

The export (``model.onnx``; the dynamo exporter puts the weights in ``model.onnx.data``) takes what ``prepare_inputs``
returns and gives what ``infer_batch`` gives, with a free batch dimension; ``prepare_inputs.py`` is
copied beside it, so the ONNX model needs neither Hyrax's model classes nor torch to run. An
``infer_batch`` that returns a dict exports one graph output per key, named by the key, and
:class:`OnnxModel` gives the dict back (``engine`` then writes a results column per key, as ``infer``).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
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


#: Highest opset the TorchScript exporter writes (torch.onnx's ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET).
TORCHSCRIPT_MAX_OPSET = 20


@dataclass(frozen=True)
class Exported:
    """What :func:`export` wrote: the file, the exporter that wrote it, and why not TorchScript."""

    path: Path
    exporter: str  # "torchscript" or "dynamo"
    reason: str | None = None  # why the dynamo exporter was used (None: TorchScript was)


def _infer_module(model, single: bool, keys: list[str] | None = None):
    """``infer_batch`` as a module over the prepared arrays; ``keys``: it returns a dict, given to the
    exporter as a tuple of its values in that order (one named graph output each)."""
    import torch

    class InferBatch(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, *inputs):
            output = self.wrapped.infer_batch(inputs[0] if single else tuple(inputs))
            return output if keys is None else tuple(output[key] for key in keys)

    return InferBatch(model.eval()).eval()


def _output_keys(module, arrays: list[np.ndarray]) -> list[str] | None:
    """The keys of the dict ``infer_batch`` returns (None: it returns a tensor), from one call."""
    from collections.abc import Mapping

    import torch

    with torch.no_grad():
        output = module(*(torch.from_numpy(a) for a in arrays))
    return [str(key) for key in output] if isinstance(output, Mapping) else None


def export(model, prepared_batch: Any, directory: Path, opset_version: int | None = None) -> Exported:
    """Write ``directory/model.onnx`` for ``model.infer_batch`` on inputs shaped like ``prepared_batch``.

    The TorchScript exporter is tried first: it traces in milliseconds and builds nothing per call. The
    dynamo exporter (``torch.export``; its first call imports ``torch._dynamo`` and onnxscript, and each
    call rebuilds onnxscript's operator registry, about a second) is used only where a trace cannot be
    trusted or made: the tracer warned that it recorded a Python value (data-dependent control flow,
    ``len(x)``, ``int(x.shape[0])``), TorchScript raised, the opset asked for is above
    :data:`TORCHSCRIPT_MAX_OPSET`, or this torch has no TorchScript exporter. The reason is logged and
    returned.
    """
    arrays = _inputs(prepared_batch)
    single = not isinstance(prepared_batch, tuple | list)
    keys = _output_keys(_infer_module(model, single), arrays)
    module = _infer_module(model, single, keys)
    names = [f"input_{i}" for i in range(len(arrays))]
    outputs = keys or ["output"]
    path = directory / ONNX_FILE
    name = type(model).__name__
    reason = None
    if opset_version is not None and int(opset_version) > TORCHSCRIPT_MAX_OPSET:
        reason = f"onnx.opset_version = {opset_version} is above the TorchScript exporter's {TORCHSCRIPT_MAX_OPSET}"
    else:
        reason = _torchscript_export(module, arrays, path, names, opset_version, outputs)
    if reason is None:
        exported = Exported(path, "torchscript")
    else:
        logger.info("ONNX export of %s with the dynamo exporter: %s", name, reason)
        _dynamo_export(module, arrays, path, names, opset_version, name, outputs)
        exported = Exported(path, "dynamo", reason)
    _check_dynamic_batch(path, name, len(arrays[0]))
    return exported


def _torchscript_export(module, arrays, path: Path, names, opset_version, outputs=("output",)) -> str | None:
    """Export with the TorchScript exporter; None when done, else why it must not be used."""
    import warnings

    import torch

    tensors = tuple(torch.from_numpy(a) for a in arrays)
    axes = {name: {0: "batch"} for name in [*names, *outputs]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                torch.onnx.export(
                    module,
                    tensors,
                    str(path),
                    dynamo=False,
                    input_names=names,
                    output_names=list(outputs),
                    dynamic_axes=axes,
                    opset_version=None if opset_version is None else int(opset_version),
                )
        except Exception as error:  # any failure of the trace: the dynamo exporter may still manage
            path.unlink(missing_ok=True)
            return f"the TorchScript exporter raised {type(error).__name__}: {str(error)[:300]}"
    # torch 2.9+ marks the TorchScript exporter deprecated (DeprecationWarnings a user never sees
    # outside tests: they name torch's frames). Its removal is handled: the call then raises, and the
    # dynamo exporter is used. Other warnings are passed on, except the tracer's, which are the verdict.
    traced = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    for w in caught:
        if w not in traced and not issubclass(w.category, DeprecationWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if traced:
        path.unlink(missing_ok=True)
        return f"the trace recorded a Python value ({str(traced[0].message).split('.')[0]})"
    return None


def _dynamo_export(module, arrays, path: Path, names, opset_version, name: str, outputs=("output",)) -> None:
    import torch

    from hyrax.plugins import optional_import

    optional_import("onnxscript", "onnx", "ONNX export")
    batch = torch.export.Dim("batch")
    kwargs: dict[str, Any] = {
        "dynamo": True,
        "input_names": names,
        "output_names": list(outputs),
        # forward(*inputs) has one (variadic) parameter: its shapes are one tuple, one entry per input.
        "dynamic_shapes": (tuple({0: batch} for _ in arrays),),
    }
    if opset_version is not None:
        kwargs["opset_version"] = int(opset_version)
    tensors = tuple(torch.from_numpy(a) for a in arrays)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), torch.no_grad():
            torch.onnx.export(module, tensors, str(path), **kwargs)
    except Exception as error:  # the exporter raises many kinds; all mean "cannot export this model"
        raise OnnxError(
            f"ONNX export of {name} failed: {type(error).__name__}: {str(error)[:800]}. Operations "
            f"that ONNX cannot express (data-dependent Python control flow, custom ops) need rewriting in infer_batch."
        ) from error
    logger.debug(chatter.getvalue())


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
    """An exported model with its prepare_inputs: ``OnnxModel(dir).infer(numpy_batch_dict)`` -> numpy (a
    dict of arrays, by output name, for an export of an ``infer_batch`` that returns a dict)."""

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
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.prepare = load_prepare_inputs(self.directory)
        if self.prepare is None:
            raise OnnxError(f"No prepare_inputs.py in {self.directory}; export again with `hyrax to_onnx`.")

    def run_prepared(self, prepared: Any) -> np.ndarray | dict[str, np.ndarray]:
        arrays = _inputs(prepared)
        positions = [_input_position(name) for name in self.input_names]
        if None in positions:  # a graph not named by export(): its inputs in order, its first output
            return self.session.run(None, dict(zip(self.input_names, arrays, strict=True)))[0]
        # input_<i> is prepare_inputs' i-th array; the TorchScript exporter leaves out those infer_batch
        # does not use (HyraxCNN's labels).
        outputs = self.session.run(
            None, {name: arrays[i] for name, i in zip(self.input_names, positions, strict=True)}
        )
        if self.output_names == ["output"]:
            return outputs[0]
        return dict(zip(self.output_names, outputs, strict=True))  # the keys of infer_batch's dict

    def infer(self, batch) -> np.ndarray | dict[str, np.ndarray]:
        return self.run_prepared(self.prepare(batch))


def _input_position(name: str) -> int | None:
    prefix, _, number = name.partition("_")
    return int(number) if prefix == "input" and number.isdigit() else None


def copy_prepare_inputs(weights_directory: Path, directory: Path) -> None:
    """Copy prepare_inputs.py beside the export, with its digest (the file is refused if it changed)."""
    from hyrax.models.model import load_prepare_inputs, saved_context_config, write_prepare_inputs

    source = weights_directory / "prepare_inputs.py"
    if source.is_file():
        load_prepare_inputs(weights_directory)  # its digest is checked before it is passed on
        # with the config it was trained with (get_context() in it), not the export run's
        write_prepare_inputs(directory, source.read_text(), saved_context_config(weights_directory))
