"""``ImageDCAE``: a deeper convolutional autoencoder (four levels, two convolutions each) with a dense
bottleneck. ``[model.ImageDCAE] latent_dim`` sets the latent length."""

from __future__ import annotations

import numpy as np
from torch import nn

from hyrax.models.layers import (
    LossSteps,
    feature_shape,
    fit_to,
    image_input,
    image_of,
    image_shape,
    reconstruction_criterion,
)
from hyrax.models.model import hyrax_model

WIDTHS = (16, 32, 64, 128)


@hyrax_model
class ImageDCAE(LossSteps, nn.Module):
    """Encoder: per level a 3x3 convolution and a stride-2 convolution; decoder mirrors it."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.criterion = reconstruction_criterion(config)
        latent = int(config["model"]["ImageDCAE"]["latent_dim"])
        self.input_shape = image_shape(data_sample)
        channels = self.input_shape[0]
        encoder, width = [], channels
        for out in WIDTHS:
            encoder += [
                nn.Conv2d(width, out, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(out, out, 3, stride=2, padding=1),
                nn.GELU(),
            ]
            width = out
        self.encoder = nn.Sequential(*encoder)
        self.features = feature_shape(self.encoder, self.input_shape)
        flat = int(np.prod(self.features))
        self.bottleneck = nn.Linear(flat, latent)
        self.expand = nn.Sequential(nn.Linear(latent, flat), nn.GELU())
        decoder = []
        for level in reversed(range(len(WIDTHS))):
            out = channels if level == 0 else WIDTHS[level - 1]
            decoder += [
                nn.ConvTranspose2d(WIDTHS[level], WIDTHS[level], 3, stride=2, padding=1, output_padding=1),
                nn.GELU(),
                nn.Conv2d(WIDTHS[level], out, 3, padding=1),
            ]
            if level:
                decoder.append(nn.GELU())
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x):
        return self.bottleneck(self.encoder(image_of(x)).flatten(1))

    def _loss(self, x):
        image = image_of(x)
        reconstruction = fit_to(
            self.decoder(self.expand(self(image)).reshape(-1, *self.features)), *self.input_shape[1:]
        )
        return self.criterion(reconstruction, image)

    @staticmethod
    def prepare_inputs(batch):
        return image_input(batch)
