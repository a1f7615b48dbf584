"""``HyraxCNN``: a small supervised image classifier.

Inputs are the ``image`` field and the label field (``label.field``, else ``label``); ``infer`` writes
the raw class scores (logits), as the published Hyrax does; ``[model.HyraxCNN] infer_output =
"probabilities"`` writes their softmax instead. ``[model.HyraxCNN] output_classes`` sets the number of
classes. It trains with cross-entropy, whatever ``[criterion]`` says (a classifier needs it).

Its layers are the published Hyrax's (the PyTorch CIFAR-10 tutorial's network: ``conv1``, ``pool``,
``conv2``, ``fc1``-``fc3``, with the same names and shapes), so weights saved by Hyrax 0.13's HyraxCNN load
here unchanged. ``[model.HyraxCNN] architecture = "compact"`` gives the network earlier releases of this
Hyrax used (two 3x3 convolutions and global pooling, for images smaller than 16 pixels), whose weights
load only into it.
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
#: The layers: the published Hyrax's, or the earlier releases' compact network.
ARCHITECTURES = ("published", "compact")
#: The published network's two 5x5 convolutions, each followed by 2x2 pooling, need this many pixels.
SMALLEST_PUBLISHED_IMAGE = 16


def _after_stage(size: int) -> int:
    """An image side after a 5x5 convolution (no padding) and 2x2 pooling."""
    return (size - 4) // 2


@hyrax_model
class HyraxCNN(LossSteps, nn.Module):
    """Two 5x5 convolutions with 2x2 pooling, then three dense layers (the published HyraxCNN)."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        settings = config["model"]["HyraxCNN"]
        channels, *sides = image_shape(data_sample)
        classes = int(settings["output_classes"])
        self.architecture = settings.get("architecture", "published")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f'[model.HyraxCNN] architecture = "{self.architecture}": write one of '
                f"{', '.join(repr(a) for a in ARCHITECTURES)}."
            )
        if self.architecture == "published":
            if min(sides) < SMALLEST_PUBLISHED_IMAGE:
                raise ConfigError(
                    f"HyraxCNN's published layers (two 5x5 convolutions, each with 2x2 pooling) need images of "
                    f"at least {SMALLEST_PUBLISHED_IMAGE}x{SMALLEST_PUBLISHED_IMAGE} pixels; the data's images are "
                    f"{'x'.join(str(s) for s in sides)}. Use larger cutouts, or set [model.HyraxCNN] "
                    'architecture = "compact" (a network for any size, whose weights differ from the published).'
                )
            height, width = (_after_stage(_after_stage(side)) for side in sides)
            self.conv1 = nn.Conv2d(channels, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * height * width, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, classes)
        else:
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
        self.infer_output = settings.get("infer_output", "logits")
        if self.infer_output not in INFER_OUTPUTS:
            raise ConfigError(
                f'[model.HyraxCNN] infer_output = "{self.infer_output}": write one of '
                f"{', '.join(repr(o) for o in INFER_OUTPUTS)}."
            )

    def weights_hint(self, state) -> str | None:
        """Why a weights file does not fit, when it is the other architecture's (for WeightsError)."""
        compact = any(str(key).startswith(("features.", "head.")) for key in state)
        published = any(str(key).startswith(("conv1.", "fc1.")) for key in state)
        if compact and self.architecture == "published":
            return (
                "These are the weights of the compact HyraxCNN of earlier releases of this Hyrax; its layers are "
                'now the published Hyrax\'s. Set [model.HyraxCNN] architecture = "compact" to load them.'
            )
        if published and self.architecture == "compact":
            return (
                "These are the weights of the published HyraxCNN (Hyrax 0.13's layers). Remove "
                '[model.HyraxCNN] architecture = "compact" to load them.'
            )
        return None

    def forward(self, x):
        x = image_of(x)
        if self.architecture == "compact":
            return self.head(self.features(x))
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(torch.relu(self.fc2(x)))

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
