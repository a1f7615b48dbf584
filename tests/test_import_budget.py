"""What a verb imports, counted in a fresh process (issue 31): heavy modules only on the path that uses
them, and a budget of modules per verb (measured, plus a margin), not a timing.

Measured on torch 2.13 (modules in sys.modules after the verb): ``import hyrax; Hyrax()`` 132; infer of
64 images by HyraxAutoencoder 1,608 (2,411 while the model got an optimizer: torch._dynamo); train
3,675; to_onnx 1,680.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

#: modules no verb here needs: each is imported only by the verbs that use it.
NEVER = ("torch._dynamo", "onnxscript", "sklearn", "umap", "chromadb", "qdrant_client", "mlflow", "holoviews")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from hyrax import Hyrax
    h = Hyrax(setup_logging=False)
    for key, value in json.loads(sys.argv[2]).items():
        h.set_config(key, value)
    if sys.argv[1] != "none":
        getattr(h, sys.argv[1])()
    print(json.dumps(sorted(sys.modules)))
    """
)


def modules_after(verb: str, settings: dict, cwd) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, verb, json.dumps(settings)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def images(tmp_path, size=64) -> dict:
    random = {"dataset_class": "HyraxRandomDataset"}
    return {
        "general.results_dir": str(tmp_path / "results"),
        "model.name": "HyraxAutoencoder",
        "train.epochs": 1,
        "data_set.HyraxRandomDataset.size": size,
        "data_set.HyraxRandomDataset.shape": [1, 32, 32],
        "data_request.train.data": random,
        "data_request.infer.data": random,
    }


def test_the_facade_imports_nothing_heavy(tmp_path):
    loaded = modules_after("none", {}, tmp_path)
    assert len(loaded) < 250, len(loaded)
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "lance", "lancedb", "pandas", "pyarrow")]


@pytest.mark.slow  # a fresh process importing torch and lance: 6-20 s on the shared machine
def test_infer_imports_torch_and_lance_but_no_optimizer_machinery(tmp_path):
    """A published infer (infer.model_weights_file given): torch and lance, but not torch._dynamo, which
    the first torch optimizer imports (infer makes none) nor anything of train, reduce or the indexes."""
    from hyrax.config import ConfigManager
    from hyrax.models.autoencoder import HyraxAutoencoder

    manager = ConfigManager()
    for key, value in images(tmp_path).items():
        manager.set_config(key, value)
    weights = HyraxAutoencoder(manager.config, data_sample=np.zeros((1, 1, 32, 32), "float32"))
    path = weights.save(tmp_path / "weights.pth")
    loaded = modules_after("infer", {**images(tmp_path), "infer.model_weights_file": str(path)}, tmp_path)
    assert {"torch", "lance"} <= set(loaded)
    assert [m for m in NEVER if m in loaded] == []
    assert len(loaded) < 2_000, len(loaded)  # 1,608 measured


@pytest.mark.slow
def test_train_and_to_onnx_budgets(tmp_path):
    """-m slow (two trainings in fresh processes): train may import mlflow (its tracking) but not the
    exporters; to_onnx imports onnx and onnxruntime, never onnxscript or torch._dynamo (TorchScript
    exporter)."""
    loaded = modules_after("train", images(tmp_path), tmp_path)
    assert [
        m for m in ("onnx", "onnxscript", "onnxruntime", "sklearn", "umap", "chromadb") if m in loaded
    ] == []
    assert len(loaded) < 4_000, len(loaded)  # 3,675 measured
    loaded = modules_after("to_onnx", images(tmp_path), tmp_path)
    assert {"onnx", "onnxruntime"} <= set(loaded)
    assert [m for m in NEVER if m in loaded] == []
    assert len(loaded) < 2_000, len(loaded)  # 1,680 measured
