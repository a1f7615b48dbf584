"""to_onnx's exporter choice (issue 31): TorchScript first, the dynamo exporter only where a trace cannot
be trusted or made, with the reason logged; every built-in model exports and agrees with torch."""

from __future__ import annotations

import copy
import logging
import tomllib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from hyrax import Hyrax
from hyrax.models import BUILTIN_MODELS
from hyrax.models import onnx as hyrax_onnx
from hyrax.models.model import to_torch
from hyrax.models.onnx import Exported, export


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(6, 3)

    def infer_batch(self, x):
        return self.layer(x.flatten(1))


class Branching(Linear):
    def infer_batch(self, x):
        if x.sum() > 0:  # data-dependent Python control flow: the trace would keep one branch
            return self.layer(x.flatten(1))
        return -self.layer(x.flatten(1))


def _dynamo_stub(calls):
    """Stands in for the dynamo exporter (seconds to import): records the call, writes a traced graph."""

    def stub(module, arrays, path, names, opset_version, name, outputs=("output",)):
        calls.append(name)
        tensors = tuple(torch.from_numpy(a) for a in arrays)
        axes = {input_name: {0: "batch"} for input_name in names}
        torch.onnx.export(module, tensors, str(path), dynamo=False, input_names=names, dynamic_axes=axes)

    return stub


def _run(path, prepared, rows=None):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = [a[:rows] for a in hyrax_onnx._inputs(prepared)]
    # input_<i>: the i-th array (the TorchScript exporter leaves out inputs infer_batch does not use)
    return session.run(None, {i.name: arrays[int(i.name.split("_")[1])] for i in session.get_inputs()})[0]


def test_a_traceable_model_is_exported_by_torchscript_without_the_dynamo_exporter(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(hyrax_onnx, "_dynamo_export", _dynamo_stub(calls))
    model = Linear().eval()
    x = np.random.default_rng(0).random((4, 2, 3), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # torch's deprecation of the exporter stays ours
        exported = export(model, x, tmp_path)
    assert exported == Exported(tmp_path / "model.onnx", "torchscript") and calls == []
    with torch.no_grad():
        for rows in (x, x[:1]):  # the batch dimension is free
            np.testing.assert_allclose(
                _run(exported.path, rows), model.infer_batch(torch.from_numpy(rows)), atol=1e-6
            )


def test_the_dynamo_exporter_only_where_the_trace_cannot_be_trusted_with_the_reason(
    tmp_path, monkeypatch, caplog
):
    calls: list[str] = []
    monkeypatch.setattr(hyrax_onnx, "_dynamo_export", _dynamo_stub(calls))
    x = np.ones((4, 6), dtype=np.float32)
    with caplog.at_level(logging.INFO, logger="hyrax.models.onnx"):
        exported = export(Branching().eval(), x, tmp_path)
    assert exported.exporter == "dynamo" and calls == ["Branching"]
    assert "trace recorded a Python value" in exported.reason
    assert "Branching with the dynamo exporter: the trace recorded a Python value" in caplog.text
    # an opset the TorchScript exporter cannot write
    exported = export(Linear().eval(), x, tmp_path, opset_version=21)
    assert exported.exporter == "dynamo" and "opset_version = 21 is above" in exported.reason


@pytest.mark.slow  # trains first: ~14 s on the shared machine
def test_the_published_to_onnx_call_records_the_exporter(tmp_path):
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1)
    h.set_config("data_set.HyraxRandomDataset.size", 8)
    h.set_config("data_set.HyraxRandomDataset.shape", [2, 3])
    h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
    h.train()
    with open(h.to_onnx() / "onnx_check.toml", "rb") as handle:
        check = tomllib.load(handle)
    assert check["exporter"] == "torchscript" and check["agree"] and "dynamo_reason" not in check


def _builtin(name):
    from hyrax.config import ConfigManager
    from hyrax.datasets.provider import DataProvider
    from hyrax.plugins import MODELS

    model_class = MODELS.get(name)
    manager = ConfigManager()
    if name == "HyraxTs2Vec":
        for key, value in {
            "output_dims": 16,
            "hidden_dims": 8,
            "depth": 2,
            "max_sequence_length": 32,
        }.items():
            manager.set_config(f"model.HyraxTs2Vec.{key}", value)
        from tests.conftest import REPO

        data = {
            "dataset_class": "LightCurveDataset",
            "data_location": str(REPO / "tests/data/s82_rrlyrae/per_object"),
        }
    else:
        manager.set_config("data_set.HyraxRandomDataset.shape", [3, 16, 16])
        manager.set_config("data_set.HyraxRandomDataset.size", 8)
        data = {"dataset_class": "HyraxRandomDataset"}
    manager.set_config("data_request.train.data", data)
    config = copy.deepcopy(manager.config)
    config["model"]["name"] = name
    if callable(getattr(model_class, "configure_inputs", None)):
        model_class.configure_inputs(config)
    provider = DataProvider(config, "train")
    batch = provider.collate([provider[i] for i in range(4)])
    model = model_class(config, data_sample=model_class.prepare_inputs(provider.collate([provider[0]])))
    return model.eval(), model_class.prepare_inputs(batch)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_every_builtin_model_exports_by_torchscript_as_the_dynamo_exporter_does(name, tmp_path):
    """Each built-in model is traced (no fallback), agrees with torch at the example batch and at one
    object, as the dynamo exporter's graph does (same opset; as many nodes for the image models)."""
    import onnx

    model, prepared = _builtin(name)
    (tmp_path / "t").mkdir()
    exported = export(model, prepared, tmp_path / "t")
    assert exported.exporter == "torchscript", exported.reason
    with torch.no_grad():
        expected = model.infer_batch(to_torch(prepared)).numpy()
    np.testing.assert_allclose(_run(exported.path, prepared), expected, atol=1e-5)
    np.testing.assert_allclose(_run(exported.path, prepared, rows=1), expected[:1], atol=1e-5)
    (tmp_path / "d").mkdir()
    arrays = hyrax_onnx._inputs(prepared)
    module = hyrax_onnx._infer_module(model, single=not isinstance(prepared, tuple | list))
    names = [f"input_{i}" for i in range(len(arrays))]
    hyrax_onnx._dynamo_export(module, arrays, tmp_path / "d" / "model.onnx", names, None, name)
    traced, dynamo = (onnx.load(str(p)) for p in (exported.path, tmp_path / "d" / "model.onnx"))
    assert traced.opset_import[0].version == dynamo.opset_import[0].version
    np.testing.assert_allclose(_run(tmp_path / "d" / "model.onnx", prepared), expected, atol=1e-5)
    if name != "HyraxTs2Vec":  # its masking and pooling decompose differently (outputs agree, above)
        # as many operators (TorchScript writes Flatten where dynamo writes Reshape)
        assert len(traced.graph.node) == len(dynamo.graph.node)
