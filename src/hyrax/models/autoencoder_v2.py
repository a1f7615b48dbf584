"""``HyraxAutoencoderV2``: the autoencoder with batch normalization after every convolution.

``[model.HyraxAutoencoderV2]`` sets ``base_channel_size`` and ``latent_dim``.
"""

from __future__ import annotations

from hyrax.models.autoencoder import HyraxAutoencoder
from hyrax.models.model import hyrax_model


@hyrax_model
class HyraxAutoencoderV2(HyraxAutoencoder):
    """As HyraxAutoencoder, with BatchNorm2d between convolution and activation."""

    settings_table = "HyraxAutoencoderV2"
    batch_norm = True
