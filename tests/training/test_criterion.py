"""The loss and optimizer a training uses are stated once, with why; a classification loss given a
reconstruction (a notebook autoencoder's self.criterion(decoded, x)) is a warning naming the setting to
change (issue 26, finding 10). The default stays the published Hyrax 0.13's: torch.nn.CrossEntropyLoss."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from torch import nn

from hyrax.models import hyrax_model
from hyrax.models.parts import CriterionWarning
from tests.training.test_training import make_hyrax


@hyrax_model
class NotebookAutoencoder(nn.Module):
    """As written in a notebook cell: the loss is whatever [criterion] gives, on a reconstruction."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.encoder = nn.Linear(192, 8)
        self.decoder = nn.Linear(8, 192)

    def forward(self, x):
        return self.encoder(x.flatten(1))

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"]

    def train_batch(self, x):
        self.optimizer.zero_grad()
        decoded = self.decoder(self(x)).reshape(x.shape)
        loss = self.criterion(decoded, x)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def infer_batch(self, x):
        return self(x)


@hyrax_model
class NotebookClassifier(nn.Module):
    """A classifier using the default criterion as meant: class indices as targets."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer = nn.Linear(192, 2)

    def forward(self, x):
        return self.layer(x.flatten(1))

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"], batch["data"]["label"]

    def train_batch(self, x):
        images, labels = x
        self.optimizer.zero_grad()
        loss = self.criterion(self(images), labels.long())
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def infer_batch(self, x):
        return self(x[0])


@pytest.fixture
def statements():
    """The 'training <Model>: criterion: ...' lines logged (the hyrax logger may not propagate)."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            if "criterion:" in record.getMessage():
                records.append(record.getMessage())

    handler, logger = Keep(level=logging.INFO), logging.getLogger("hyrax.training.loop")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_notebook_autoencoder_on_the_default_criterion_is_warned_with_the_setting(tmp_path, statements):
    h = make_hyrax(tmp_path, model="NotebookAutoencoder", epochs=2)
    with pytest.warns(CriterionWarning) as warned:
        h.train()
    ours = [w for w in warned if w.category is CriterionWarning]
    assert len(ours) == 1  # checked on the first call only
    message = str(ours[0].message)
    assert message.startswith("NotebookAutoencoder compares its output with float targets of the same shape")
    assert "self.criterion(decoded, x)" in message
    assert "torch.nn.CrossEntropyLoss (the default, [criterion] name)" in message
    assert 'Set [criterion] name = "torch.nn.MSELoss"' in message
    assert statements == [
        "training NotebookAutoencoder: criterion: torch.nn.CrossEntropyLoss (the default, [criterion] name); "
        "optimizer: torch.optim.SGD(lr=0.01, momentum=0.9) (the default, [optimizer] name)"
    ]


def test_the_setting_named_silences_it_and_is_stated(tmp_path, statements):
    h = make_hyrax(tmp_path, model="NotebookAutoencoder", epochs=1, criterion__name="torch.nn.MSELoss")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CriterionWarning)
        h.train()
    assert statements == [
        'training NotebookAutoencoder: criterion: torch.nn.MSELoss ([criterion] name = "torch.nn.MSELoss"); '
        "optimizer: torch.optim.SGD(lr=0.01, momentum=0.9) (the default, [optimizer] name)"
    ]


def test_a_classifier_on_the_default_criterion_is_not_warned(tmp_path, statements):
    h = make_hyrax(tmp_path, model="NotebookClassifier", epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CriterionWarning)
        h.train()
    assert len(statements) == 1 and "criterion: torch.nn.CrossEntropyLoss (the default" in statements[0]


def test_soft_labels_are_not_a_reconstruction():
    from hyrax.models.parts import _looks_like_reconstruction

    logits = torch.randn(4, 3)
    assert not _looks_like_reconstruction(logits, torch.softmax(torch.randn(4, 3), 1))
    assert _looks_like_reconstruction(logits, torch.randn(4, 3))
    assert not _looks_like_reconstruction(logits, torch.tensor([0, 2, 1, 1]))


def test_a_built_in_autoencoder_states_its_own_loss(tmp_path, statements):
    make_hyrax(tmp_path, model="HyraxAutoencoder", epochs=1).train()
    assert statements[0].startswith(
        "training HyraxAutoencoder: criterion: torch.nn.MSELoss (set by the model"
    )
