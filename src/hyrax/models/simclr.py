"""``SimCLR``: self-supervised contrastive learning (Chen et al. 2020), without torchvision.

Each image is augmented twice (random resized crop, flips, brightness/contrast jitter, noise, all in
torch), both views are encoded and projected, and the NT-Xent loss pulls the two views of an object
together. ``infer`` writes the representation before the projection head.
``[model.SimCLR]``: ``latent_dim``, ``projection_dimension``, ``temperature``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyrax.models.layers import LossSteps, image_input, image_of, image_shape
from hyrax.models.model import hyrax_model


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random view of each image: resized crop (50-100% of the side), flips, jitter and noise."""
    count, _, height, width = images.shape
    scale = torch.empty(count, 1).uniform_(0.5, 1.0, generator=generator)
    shift = (1 - scale) * (torch.rand(count, 2, generator=generator) * 2 - 1)
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = scale[:, 0] * torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    theta[:, 1, 1] = scale[:, 0] * torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    views = F.grid_sample(images, grid, align_corners=False, padding_mode="reflection")
    brightness = torch.empty(count, 1, 1, 1).uniform_(-0.1, 0.1, generator=generator).to(images)
    contrast = torch.empty(count, 1, 1, 1).uniform_(0.8, 1.2, generator=generator).to(images)
    mean = views.mean(dim=(1, 2, 3), keepdim=True)
    views = (views - mean) * contrast + mean + brightness
    return views + 0.01 * torch.randn(views.shape, generator=generator).to(images)


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalized temperature-scaled cross entropy over 2N views; positives are the pairs."""
    views = F.normalize(torch.cat([first, second]), dim=1)
    similarity = views @ views.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    count = len(first)
    targets = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(views.device)
    return F.cross_entropy(similarity, targets)


@hyrax_model
class SimCLR(LossSteps, nn.Module):
    """A convolutional encoder with a projection head, trained by contrasting two views."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        settings = config["model"]["SimCLR"]
        channels = image_shape(data_sample)[0]
        latent = int(settings["latent_dim"])
        self.temperature = float(settings["temperature"])
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, latent),
        )
        self.projection = nn.Sequential(
            nn.Linear(latent, latent), nn.ReLU(), nn.Linear(latent, int(settings["projection_dimension"]))
        )

    def forward(self, x):
        return self.encoder(image_of(x))

    @staticmethod
    def prepare_inputs(batch):
        return image_input(batch)

    def _loss(self, x):
        image = image_of(x)
        return nt_xent(
            self.projection(self(augment(image))), self.projection(self(augment(image))), self.temperature
        )
