"""A prepare_inputs set on a model instance is the one saved with its weights and restored by load."""

from __future__ import annotations

import pytest
from torch import nn

from hyrax.models import hyrax_model

CONFIG = {
    "criterion": {"name": "torch.nn.MSELoss"},
    "optimizer": {"name": "torch.optim.SGD"},
    "torch.optim.SGD": {"lr": 0.01},
    "scheduler": {"name": False},
}


@hyrax_model
class Patchable(nn.Module):
    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer = nn.Linear(1, 1)

    @staticmethod
    def prepare_inputs(x):
        return x


def doubled(x):
    return x * 2


def test_instance_prepare_inputs_is_saved_and_restored(tmp_path):
    model = Patchable(CONFIG)
    model.prepare_inputs = doubled  # as the published Hyrax's users patch it
    model.save(tmp_path / "weights.pth")
    assert "x * 2" in (tmp_path / "prepare_inputs.py").read_text()
    fresh = Patchable(CONFIG)
    assert fresh.prepare_inputs(3.0) == 3.0
    fresh.load(tmp_path / "weights.pth")
    assert fresh.prepare_inputs(3.0) == 6.0


NOTEBOOK = """
import sys
import numpy as np
import torch
from torch import nn
from hyrax import Hyrax, hyrax_model

SCALE = 255.0                        # a notebook constant prepare_inputs uses
BANDS = (0,)
{extra}

def rescale(image):                  # a notebook helper, using the constant too
    return image / SCALE

@hyrax_model
class Scaled(nn.Module):
    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer = nn.Linear(25, 4)

    @staticmethod
    def prepare_inputs(batch: dict[str, torch.Tensor]) -> torch.Tensor:  # annotations name torch
        return rescale(batch["data"]["image"][:, list(BANDS)].astype(np.float32)){use}

    def forward(self, x):
        return self.layer(x.reshape(len(x), -1))

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = self(x).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        return {{"loss": loss.item()}}

    def infer_batch(self, x):
        return self(x)

h = Hyrax(setup_logging=False)
h.set_config("general.results_dir", sys.argv[1])
h.set_config("model.name", "Scaled")
h.set_config("train.epochs", 1)
h.set_config("data_request.train.data", {{"dataset_class": "HyraxRandomDataset"}})
h.set_config("data_request.infer.data", {{"dataset_class": "HyraxRandomDataset"}})
h.train()
print("trained")
"""


@pytest.mark.slow  # trains and checks in a fresh Python (~14 s): the default suite stays under ten minutes on 2 cores
def test_saved_prepare_inputs_keeps_notebook_constants_and_is_checked_before_training(tmp_path):
    """A notebook's constants and helpers go into prepare_inputs.py, so inference in another process
    works; a global that cannot be saved fails the training run (checked in a fresh Python beside the
    first steps), saying what to do, and leaves no final weights."""
    import subprocess
    import sys

    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK.format(extra="", use=""))
    results = tmp_path / "results"
    trained = subprocess.run(
        [sys.executable, str(script), str(results)], capture_output=True, text=True, timeout=300
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    run = next(results.glob("*-train-*"))
    saved = (run / "prepare_inputs.py").read_text()
    assert "SCALE = 255.0" in saved and "BANDS = (0,)" in saved and "def rescale" in saved
    fresh = subprocess.run(  # another process, as inference on a cluster node would be
        [
            sys.executable,
            "-c",
            "import sys, numpy as np; from hyrax.models.model import load_prepare_inputs; "
            "print(load_prepare_inputs(sys.argv[1])({'data': {'image': np.full((2, 2, 5, 5), 51.0)}}).max())",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0 and float(fresh.stdout) == 0.2, fresh.stderr[-2000:]

    script.write_text(
        NOTEBOOK.format(extra="class Table:\n    pass\nTABLE = Table()", use=" * (TABLE is not None)")
    )
    refused = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "r2")], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0 and "trained" not in refused.stdout
    assert "fails in a fresh Python: NameError: name 'TABLE' is not defined" in refused.stderr
    assert not list((tmp_path / "r2").glob("*-train-*/example_model.pth"))


def test_a_changed_prepare_inputs_file_is_refused(tmp_path):
    import pytest

    from hyrax.models.model import WeightsError, load_prepare_inputs, trust_prepare_inputs

    model = Patchable(CONFIG)
    model.save(tmp_path / "weights.pth")
    assert load_prepare_inputs(tmp_path)(2.0) == 2.0
    path = tmp_path / "prepare_inputs.py"
    path.write_text(path.read_text() + "\nimport os  # injected\n")
    with pytest.raises(WeightsError, match="changed after Hyrax saved it.*trust_prepare_inputs"):
        Patchable(CONFIG).load(tmp_path / "weights.pth")
    trust_prepare_inputs(tmp_path)  # the user edited it on purpose
    assert load_prepare_inputs(tmp_path)(2.0) == 2.0


def test_a_lambda_prepare_inputs_is_saved_as_its_expression(tmp_path):
    from hyrax.models.model import load_prepare_inputs, prepare_inputs_source

    cls = type("Lambdas", (), {"prepare_inputs": staticmethod(lambda batch: batch["x"] * 3)})
    source = prepare_inputs_source(cls)
    assert 'prepare_inputs = lambda batch: batch["x"] * 3' in source
    (tmp_path / "prepare_inputs.py").write_text(source)
    assert load_prepare_inputs(tmp_path)({"x": 2}) == 6  # (no digest: an older run's file, with a warning)
