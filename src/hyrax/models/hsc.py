"""The published Hyrax's HSC models, by name: ``HSCAutoencoder`` and ``HSCDCAE``.

They are this Hyrax's autoencoders under the published names (same role: reconstruct HSC cutouts,
write the latent vector). Their layers size themselves from the data instead of assuming 3x258x258
cutouts, and read ``[model.HyraxAutoencoder]`` / ``[model.ImageDCAE]``. Weights saved by the published
Hyrax's classes do not load into them (other layers): retrain, as docs/migration.md says.
"""

from __future__ import annotations

from hyrax.models.autoencoder import HyraxAutoencoder
from hyrax.models.dcae import ImageDCAE
from hyrax.models.model import hyrax_model


@hyrax_model
class HSCAutoencoder(HyraxAutoencoder):
    """HyraxAutoencoder under the published name (settings: ``[model.HyraxAutoencoder]``)."""


@hyrax_model
class HSCDCAE(ImageDCAE):
    """ImageDCAE under the published name (settings: ``[model.ImageDCAE]``)."""
