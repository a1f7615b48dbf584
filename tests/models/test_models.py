"""The @hyrax_model contract and the built-in models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hyrax.datasets import HyraxDataset
from hyrax.errors import ConfigError
from hyrax.models import BUILTIN_MODELS, hyrax_model
from hyrax.models.model import ModelContractError, WeightsError, check_model_contract, load_prepare_inputs
from hyrax.plugins import MODELS
from hyrax.testing import ConformanceError, check_model


# HyraxTs2Vec takes light curves, not the random images: checked on light curves in test_ts2vec.py.
@pytest.mark.parametrize("name", sorted(set(BUILTIN_MODELS) - {"HyraxTs2Vec"}))
def test_every_builtin_model_conforms(name):
    report = check_model(MODELS.get(name))
    assert any("save/load" in line for line in report)


def _batch(n=4):
    return {
        "data": {"image": np.random.default_rng(0).random((n, 3, 8, 8), dtype=np.float32)},
        "object_id": np.arange(n).astype(str),
    }


def test_decorator_registers_notebook_class_and_supplies_optimizer(hyrax_config):
    def cell():
        @hyrax_model
        class CellModel(nn.Module):
            def __init__(self, config, data_sample=None):
                super().__init__()
                self.layer = nn.Linear(192, 2)

            def forward(self, x):
                return self.layer(x.flatten(1))

            @staticmethod
            def prepare_inputs(batch):
                return batch["data"]["image"]

            def train_batch(self, x):
                return {"loss": 0.0}

            def infer_batch(self, x):
                return self(x)

        return CellModel

    cls = cell()
    assert MODELS.get("CellModel") is cls
    hyrax_config.set_config("optimizer.name", "torch.optim.SGD")
    hyrax_config.set_config("'torch.optim.SGD'.lr", 0.5)
    hyrax_config.set_config("scheduler.name", "torch.optim.lr_scheduler.ExponentialLR")
    model = cls(hyrax_config.config)
    assert isinstance(model.optimizer, torch.optim.SGD) and model.optimizer.param_groups[0]["lr"] == 0.5
    assert isinstance(model.criterion, nn.CrossEntropyLoss)  # the published default
    assert isinstance(model.scheduler, torch.optim.lr_scheduler.ExponentialLR)
    check_model_contract(model, _batch())
    MODELS.unregister("CellModel")


def test_old_method_names_work_with_a_warning(hyrax_config):
    with pytest.warns(FutureWarning, match=r"OldModel.to_tensor is deprecated: rename it prepare_inputs"):

        @hyrax_model
        class OldModel(nn.Module):
            def __init__(self, config, shape):
                super().__init__()
                self.layer = nn.Linear(192, 2)

            def forward(self, x):
                return self.layer(x.flatten(1))

            @staticmethod
            def to_tensor(batch):
                return batch["data"]["image"]

            def train_step(self, x):
                return {"loss": 1.0}

            def infer_batch(self, x):
                return self(x)

    model = OldModel(hyrax_config.config, data_sample=None)
    assert model.train_batch(None) == {"loss": 1.0}
    assert OldModel.prepare_inputs(_batch()).shape == (4, 3, 8, 8)
    MODELS.unregister("OldModel")


def _model(hyrax_config, **methods):
    body = {
        "__init__": lambda self, config, data_sample=None: (
            nn.Module.__init__(self),
            setattr(self, "layer", nn.Linear(192, 2)),
        )[0],
        "forward": lambda self, x: self.layer(x.flatten(1)),
        "prepare_inputs": staticmethod(lambda batch: batch["data"]["image"]),
        "train_batch": lambda self, x: {"loss": 0.0},
        "infer_batch": lambda self, x: self(x),
    }
    body.update(methods)
    body = {k: v for k, v in body.items() if v is not None}
    cls = hyrax_model(type("Probe", (nn.Module,), body))
    return cls(hyrax_config.config)


def test_contract_messages(hyrax_config):
    with pytest.raises(
        ModelContractError, match=r"Probe has no train_batch. Add one, e.g.:\n.*optimizer.step"
    ):
        check_model_contract(_model(hyrax_config, train_batch=None), _batch())
    with pytest.raises(ModelContractError, match=r"prepare_inputs returned a torch tensor: return numpy"):
        check_model_contract(
            _model(hyrax_config, prepare_inputs=staticmethod(lambda b: torch.zeros(4, 3, 8, 8))), _batch()
        )
    with pytest.raises(
        ModelContractError, match=r"cannot take a batch of shape \(4, 3, 5, 5\).*layers fit the data"
    ):
        small = {"data": {"image": np.zeros((4, 3, 5, 5), np.float32)}, "object_id": np.arange(4).astype(str)}
        check_model_contract(_model(hyrax_config), small)
    with pytest.raises(ModelContractError, match=r"one row per object \(batch of 4\), got \(2,\)"):
        check_model_contract(_model(hyrax_config, infer_batch=lambda self, x: self(x)[0]), _batch())
    MODELS.unregister("Probe")


def test_weights_that_do_not_fit_name_the_layers(hyrax_config, tmp_path):
    hyrax_config.set_config("model.HyraxAutoencoder.latent_dim", 8)
    cls = MODELS.get("HyraxAutoencoder")
    sample = np.zeros((1, 3, 16, 16), np.float32)
    path = cls(hyrax_config.config, data_sample=sample).save(tmp_path / "w.pth")
    hyrax_config.set_config("model.HyraxAutoencoder.latent_dim", 16)
    other = cls(hyrax_config.config, data_sample=sample)
    with pytest.raises(
        WeightsError,
        match=r"do not fit HyraxAutoencoder: layers of another shape: to_latent.weight \(model \(16,",
    ):
        other.load(path)
    with pytest.raises(WeightsError, match="does not exist"):
        other.load(tmp_path / "missing.pth")


def test_prepare_inputs_travels_with_the_weights(hyrax_config, tmp_path):
    cls = MODELS.get("HyraxAutoencoder")
    cls(hyrax_config.config, data_sample=np.zeros((1, 3, 16, 16), np.float32)).save(tmp_path / "w.pth")
    prepare = load_prepare_inputs(tmp_path)
    assert "def prepare_inputs(batch):" in (tmp_path / "prepare_inputs.py").read_text()
    batch = {"data": {"image": np.ones((2, 3, 4, 4), np.float64)}, "object_id": np.array(["a", "b"])}
    assert prepare(batch).dtype == np.float32


def test_check_model_rejects_undecorated_classes():
    class Plain(nn.Module):
        pass

    with pytest.raises(ConformanceError, match="not decorated with @hyrax_model"):
        check_model(Plain)


def test_cnn_labels_that_are_not_class_numbers_are_named():
    """HyraxCNN with string labels says so (it used to blame a missing 'label' field)."""
    from hyrax.models.cnn import HyraxCNN
    from hyrax.models.model import ModelContractError

    batch = {"data": {"image": np.zeros((2, 3, 8, 8), np.float32), "label": np.array(["ring", "spiral"])}}
    with pytest.raises(
        ModelContractError, match=r"integer class labels.*<U6 values such as \['ring', 'spiral'\]"
    ):
        HyraxCNN.prepare_inputs(batch)
    image, label = HyraxCNN.prepare_inputs({"data": {"image": batch["data"]["image"]}})
    assert label is None  # inference data without labels
    image, label = HyraxCNN.prepare_inputs({"data": {**batch["data"], "label": np.array([1, 0])}})
    assert label.dtype == np.int64


def _cnn(config, side=32):
    from hyrax.models.cnn import HyraxCNN

    torch.manual_seed(0)
    return HyraxCNN(config, data_sample=np.zeros((1, 3, side, side), np.float32))


def _images32(n=4):
    return np.random.default_rng(0).random((n, 3, 32, 32), dtype=np.float32)


PUBLISHED_CNN = Path(__file__).resolve().parents[1] / "data" / "hyrax013_cnn"


class Published013Images(HyraxDataset):
    """The five 3x32x32 images Hyrax 0.13's HyraxCNN was run on (tests/data/hyrax013_cnn/logits.npz)."""

    def __init__(self, config, data_location=None):
        self.images = np.load(PUBLISHED_CNN / "logits.npz")["images"]
        super().__init__(config)

    def __len__(self):
        return len(self.images)

    def get_object_id(self, idx):
        return f"obj{idx}"

    def get_image(self, idx):
        return self.images[idx]


def test_published_cnn_weights_infer_the_published_logits(tmp_path):
    """As a 0.13 user writes it (pretrained_model_inference): weights saved by Hyrax 0.13's own HyraxCNN,
    given as infer.model_weights_file, load unchanged and infer the logits 0.13 computed for the images."""
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.config["general"]["results_dir"] = str(tmp_path / "results")
    h.config["model"]["name"] = "HyraxCNN"
    h.config["model"]["HyraxCNN"]["output_classes"] = 4
    h.config["data_loader"]["num_workers"] = 0
    h.config["data_request"]["infer"] = {
        "data": {
            "dataset_class": "tests.models.test_models.Published013Images",
            "primary_id_field": "object_id",
        }
    }
    h.config["infer"]["model_weights_file"] = str(PUBLISHED_CNN / "example_model.pth")
    results = h.infer()
    expected = np.load(PUBLISHED_CNN / "logits.npz")["logits"]
    assert np.allclose(np.stack([results[i] for i in range(5)]), expected, atol=1e-4)


def test_compact_cnn_weights_say_which_architecture_loads_them(hyrax_config, tmp_path):
    """Weights of the compact HyraxCNN of earlier releases name the key that loads them, and back."""
    compact = tmp_path / "compact" / "example_model.pth"
    compact.parent.mkdir()
    hyrax_config.set_config("model.HyraxCNN.output_classes", 4)
    published = _cnn(hyrax_config.config)
    with pytest.raises(
        ConfigError, match=r"at least 16x16 pixels; the data's images are 8x8.*architecture = \"compact\""
    ):
        _cnn(hyrax_config.config, side=8)
    hyrax_config.set_config("model.HyraxCNN.architecture", "compact")
    small = _cnn(hyrax_config.config, side=8)
    small.save(compact)
    with pytest.raises(WeightsError, match=r'compact HyraxCNN of earlier releases.*architecture = "compact"'):
        published.load(compact)
    small.load(compact)
    with pytest.raises(WeightsError, match=r"published HyraxCNN \(Hyrax 0.13's layers\)"):
        small.load(PUBLISHED_CNN / "example_model.pth")


def test_published_cnn_infers_raw_logits_and_trains_with_sgd(hyrax_config):
    """As a 0.13 user writes it (defaults only): HyraxCNN's inference is its raw class scores, and the
    optimizer a model gets is the published SGD(lr=0.01, momentum=0.9)."""
    model = _cnn(hyrax_config.config)
    image = torch.from_numpy(_images32())
    with torch.no_grad():
        out = model.infer_batch(image)
        assert torch.equal(out, model(image))  # logits, not their softmax
    assert not torch.allclose(out.sum(1), torch.ones(4))
    assert type(model.optimizer) is torch.optim.SGD
    group = model.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"]) == (0.01, 0.9)


def test_cnn_probabilities_and_adam_are_opt_in(hyrax_config):
    from hyrax.errors import ConfigError

    hyrax_config.set_config("model.HyraxCNN.infer_output", "probabilities")
    hyrax_config.set_config("optimizer.name", "torch.optim.Adam")
    model = _cnn(hyrax_config.config)
    image = torch.from_numpy(_images32())
    with torch.no_grad():
        out = model.infer_batch(image)
        assert torch.allclose(out, torch.softmax(model(image), 1)) and torch.allclose(
            out.sum(1), torch.ones(4)
        )
    assert type(model.optimizer) is torch.optim.Adam and model.optimizer.param_groups[0]["lr"] == 0.01
    hyrax_config.set_config("model.HyraxCNN.infer_output", "probability")
    with pytest.raises(
        ConfigError, match=r"infer_output = \"probability\": write one of 'logits', 'probabilities'"
    ):
        _cnn(hyrax_config.config)
