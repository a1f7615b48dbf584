"""``HyraxAutoencoder``: a convolutional autoencoder whose latent vector is what ``infer`` writes.

``[model.HyraxAutoencoder]`` sets ``base_channel_size`` and ``latent_dim``. Any image size works: the
layers are sized from the data sample.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from hyrax.models.layers import (
    LossSteps,
    conv_decoder,
    conv_encoder,
    feature_shape,
    fit_to,
    image_input,
    image_of,
    image_shape,
    reconstruction_criterion,
)
from hyrax.models.model import hyrax_model


@hyrax_model
class HyraxAutoencoder(LossSteps, nn.Module):
    """Three stride-2 convolutions to a dense latent vector, and back."""

    settings_table = "HyraxAutoencoder"
    batch_norm = False

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.criterion = reconstruction_criterion(config)
        settings = config["model"][self.settings_table]
        base, latent = int(settings["base_channel_size"]), int(settings["latent_dim"])
        self.input_shape = image_shape(data_sample)
        channels = self.input_shape[0]
        self.encoder = conv_encoder(channels, base, batch_norm=self.batch_norm)
        self.features = feature_shape(self.encoder, self.input_shape)
        flat = int(np.prod(self.features))
        self.to_latent = nn.Linear(flat, latent)
        self.from_latent = nn.Sequential(nn.Linear(latent, flat), nn.GELU())
        self.decoder = conv_decoder(channels, base, batch_norm=self.batch_norm)

    def forward(self, x):
        """The latent vector of each image."""
        return self.to_latent(self.encoder(image_of(x)).flatten(1))

    def decode(self, latent):
        image = self.decoder(self.from_latent(latent).reshape(-1, *self.features))
        return fit_to(image, *self.input_shape[1:])

    @staticmethod
    def prepare_inputs(batch):
        return image_input(batch)

    def _loss(self, x):
        image = image_of(x)
        return self.criterion(self.decode(self(image)), image)


@hyrax_model
class HyraxAutoencoderV2(HyraxAutoencoder):
    """As HyraxAutoencoder, with BatchNorm2d between convolution and activation
    (``[model.HyraxAutoencoderV2]``: ``base_channel_size``, ``latent_dim``)."""

    settings_table = "HyraxAutoencoderV2"
    batch_norm = True
