"""A prepare_inputs set on a model instance is the one saved with its weights and restored by load."""

from __future__ import annotations

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
