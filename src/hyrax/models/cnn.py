"""``HyraxCNN``: a small supervised image classifier.

Inputs are the ``image`` field and the label field (``label.field``, else ``label``); ``infer`` writes
the raw class scores (logits), as the published Hyrax does; ``[model.HyraxCNN] infer_output =
"probabilities"`` writes their softmax instead. ``[model.HyraxCNN] output_classes`` sets the number of
classes. It trains with cross-entropy, whatever ``[criterion]`` says (a classifier needs it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hyrax.errors import ConfigError
from hyrax.models.layers import LossSteps, image_input, image_of, image_shape
from hyrax.models.model import ModelContractError, first_field, hyrax_model

#: What ``infer`` writes: the published Hyrax's raw scores, or their softmax.
INFER_OUTPUTS = ("logits", "probabilities")


@hyrax_model
class HyraxCNN(LossSteps, nn.Module):
    """Two convolution + pooling stages, global average pooling, two dense layers."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        channels = image_shape(data_sample)[0]
        classes = int(config["model"]["HyraxCNN"]["output_classes"])
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, classes))
        self.criterion = nn.CrossEntropyLoss()
        self.infer_output = config["model"]["HyraxCNN"].get("infer_output", "logits")
        if self.infer_output not in INFER_OUTPUTS:
            raise ConfigError(
                f'[model.HyraxCNN] infer_output = "{self.infer_output}": write one of '
                f"{', '.join(repr(o) for o in INFER_OUTPUTS)}."
            )

    def forward(self, x):
        return self.head(self.features(image_of(x)))

    @staticmethod
    def prepare_inputs(batch):
        image = image_input(batch)
        try:
            raw = first_field(batch, "label")
        except ModelContractError:  # inference data may have no labels
            return image, None
        raw = np.asarray(raw)
        if raw.dtype.kind not in "biu":
            raise ModelContractError(
                f"HyraxCNN needs integer class labels 0..output_classes-1; the 'label' field holds "
                f"{raw.dtype} values such as {raw.reshape(-1)[:3].tolist()}. Map them to integers in your "
                "dataset's get_label."
            )
        return image, raw.astype(np.int64)

    def _loss(self, x):
        image, label = x
        if label is None:
            raise ValueError("HyraxCNN trains on labels: request a 'label' field in data_request.")
        return self.criterion(self(image), label)

    def validate_batch(self, x):
        with torch.no_grad():
            logits = self(x[0])
            loss = self.criterion(logits, x[1])
            accuracy = (logits.argmax(1) == x[1]).float().mean()
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    def infer_batch(self, x):
        logits = self(x[0] if isinstance(x, tuple) else x)
        return torch.softmax(logits, dim=1) if self.infer_output == "probabilities" else logits
