"""``DecalsRingsDataset``: 376 real galaxies bundled with Hyrax, for the demo and the examples.

Colour images (g, r, z bands as rendered for Galaxy Zoo DECaLS) downsampled from 424x424 to 3x64x64,
188 with a ring and 188 without. No data_location is needed.

Fields: ``image`` (3x64x64 float32 in [0, 1]), ``object_id`` (IAU name), ``ra``, ``dec`` (deg, J2000),
``ring`` and ``label`` (1: ring, 0: not), and the Galaxy Zoo DECaLS vote fractions
``featured_or_disk_fraction``, ``not_edge_on_fraction`` and ``no_spiral_arms_fraction``.

Credits: the pixels are from the DESI Legacy Imaging Surveys (DECaLS); please include the Legacy
Surveys acknowledgement. Labels and vote fractions are from Galaxy Zoo DECaLS (Walmsley et al. 2022,
MNRAS 509, 3966; catalogue on Zenodo, CC BY 4.0). The images and ring catalogue come from the zoobot
repository's example data (GPL-3.0). Cite both if you publish results.

>>> from hyrax.config import ConfigManager
>>> galaxies = DecalsRingsDataset(ConfigManager().config)
>>> len(galaxies), galaxies.get_image(0).shape
(376, (3, 64, 64))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.images import ImagePipeline

BUNDLE = Path(__file__).with_name("data") / "decals_rings_64.npz"


class DecalsRingsDataset(HyraxDataset):
    """The 376 bundled DECaLS galaxies (3x64x64 colour images, ring labels, Galaxy Zoo vote fractions).

    Credits: pixels from the DESI Legacy Imaging Surveys (DECaLS), public data; include the Legacy
    Surveys acknowledgement. Labels and vote fractions from Galaxy Zoo DECaLS (Walmsley et al. 2022,
    MNRAS 509, 3966; catalogue CC BY 4.0 on Zenodo). Images and ring catalogue from the zoobot
    repository's example data (GPL-3.0). Cite both if you publish results.
    """

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        with np.load(BUNDLE) as bundle:
            self.images = bundle["images"]
            columns = {name: bundle[name] for name in bundle.files if name != "images"}
        columns["label"] = columns["ring"]
        super().__init__(config, data_location, columns)
        # the one image path (crop_to, transform...); "auto" keeps the 0-1 pixels
        self.image_pipeline = ImagePipeline.from_config(config, type(self).__name__, {"normalize": "none"})

    def __len__(self) -> int:
        return len(self.images)

    def get_image(self, idx: int) -> np.ndarray:
        return self.image_pipeline(self.images[idx].astype(np.float32) / 255.0, str(idx))

    def display(self, idx: int) -> np.ndarray:
        """The galaxy as an RGB image (height, width, 3) uint8, for viewers."""
        return self.images[idx].transpose(1, 2, 0)
