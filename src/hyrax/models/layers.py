"""Building blocks shared by the built-in image models."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from hyrax.errors import DataError

logger = logging.getLogger(__name__)

#: Fields already announced as a model's input (said once a process, not every batch).
_ANNOUNCED: set[str] = set()


def image_input(batch: Mapping, field: str = "image") -> np.ndarray:
    """The built-in image models' input, float32: the batch's ``image`` field; without one, the only
    numeric array field shaped like images, (batch, channels, height, width) or (batch, height, width),
    such as a resampled light curve (batch, bands, 4, length), said once in the log. Several such fields
    are an error listing them.

    >>> curve = {"curves": {"lightcurve": np.zeros((2, 5, 4, 64)), "period": np.zeros(2)}}
    >>> image_input(curve).shape
    (2, 5, 4, 64)
    """
    from hyrax.models.model import ModelContractError

    for value in batch.values():
        if isinstance(value, Mapping) and field in value:
            return np.asarray(value[field], dtype=np.float32)
    arrays = {
        f"{name}.{key}": array
        for name, fields in batch.items()
        if isinstance(fields, Mapping)
        for key, array in fields.items()
        if isinstance(array, np.ndarray) and array.dtype.kind in "iuf" and not key.endswith("_mask")
    }
    shaped = {name: a for name, a in arrays.items() if a.ndim == 4} or {
        name: a for name, a in arrays.items() if a.ndim == 3
    }
    listed = ", ".join(f"{name} ({' x '.join(map(str, a.shape[1:]))})" for name, a in arrays.items())
    if len(shaped) == 1:
        ((name, array),) = shaped.items()
        if name not in _ANNOUNCED:
            _ANNOUNCED.add(name)
            logger.info(
                "The model takes the field '%s' (%s) as its %s: the batch has no '%s' field and no other array "
                "field shaped like one.",
                name,
                " x ".join(map(str, array.shape[1:])),
                field,
                field,
            )
        return np.asarray(array, dtype=np.float32)
    if shaped:
        raise ModelContractError(
            f"The batch has no '{field}' field and several fields could be the model's input: "
            f"{', '.join(shaped)}. Request only the one it should take in [data_request.<group>.<name>] fields "
            f'(or name that field "{field}")).'
        )
    raise ModelContractError(
        f"The batch has no '{field}' field, nor an array field shaped like one ((channels,) height x width, or a "
        f"resampled light curve, bands x 4 x length); its fields: {listed or '(none)'}. Request one in "
        f"`fields`; a light curve becomes one with [data_set.lightcurve]."
    )


def image_shape(data_sample) -> tuple[int, int, int]:
    """(channels, height, width) from a prepared sample (an image, or a tuple starting with one)."""
    sample = data_sample[0] if isinstance(data_sample, tuple | list) else data_sample
    if sample is None:
        raise DataError(
            "This model needs a data_sample to size its layers; Hyrax passes one when it builds the model."
        )
    shape = tuple(np.shape(sample))[-3:]
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise DataError(
            f"This model takes images (channels, height, width); the data has shape {np.shape(sample)}."
        )
    return shape


def image_of(x):
    """The image tensor of a prepared batch (the first item of a tuple), with a channel axis."""
    image = x[0] if isinstance(x, tuple | list) else x
    return image.unsqueeze(1) if image.ndim == 3 else image


def conv_encoder(channels: int, base: int, depth: int = 3, batch_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = channels
    for level in range(depth):
        out = base * 2**level
        layers.append(nn.Conv2d(width, out, 3, stride=2, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.GELU())
        width = out
    return nn.Sequential(*layers)


def conv_decoder(channels: int, base: int, depth: int = 3, batch_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = base * 2 ** (depth - 1)
    for level in reversed(range(depth)):
        out = channels if level == 0 else base * 2 ** (level - 1)
        layers.append(nn.ConvTranspose2d(width, out, 3, stride=2, padding=1, output_padding=1))
        if level:
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.GELU())
        width = out
    return nn.Sequential(*layers)


def feature_shape(module: nn.Module, shape: tuple[int, int, int]) -> tuple[int, ...]:
    """Output shape of ``module`` for one input of ``shape`` (in eval mode: batch norm needs no batch)."""
    was_training = module.training
    module.eval()
    with torch.no_grad():
        result = tuple(module(torch.zeros(1, *shape)).shape[1:])
    module.train(was_training)
    return result


def fit_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop a decoder's output (which rounds sizes up to powers of two) to the input's size."""
    return image[..., :height, :width]


def reconstruction_criterion(config) -> torch.nn.Module | None:
    """The loss of a model that reconstructs its input: mean squared error while ``criterion.name`` is
    the default (CrossEntropyLoss, the published Hyrax's default, a classification loss that means
    nothing for a reconstruction); None (the configured criterion) when the user chose one."""
    name = (config.get("criterion") or {}).get("name")
    return torch.nn.MSELoss() if name in ("torch.nn.CrossEntropyLoss", False, None) else None


class LossSteps:
    """``train_batch``, ``validate_batch``/``test_batch`` and ``infer_batch`` for a model that defines
    ``_loss(x)`` (a scalar tensor) and ``forward`` (the output ``infer`` writes)."""

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = self._loss(x)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def validate_batch(self, x):
        with torch.no_grad():
            return {"loss": self._loss(x).item()}

    def test_batch(self, x):
        return self.validate_batch(x)

    def infer_batch(self, x):
        return self(x)
