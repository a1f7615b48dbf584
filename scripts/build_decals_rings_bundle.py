"""Build the bundled galaxy dataset from ../shared/data/gz_decals_rings (run once; output is committed).

    python scripts/build_decals_rings_bundle.py [SOURCE_DIR]

Reads the 376 424x424 RGB JPEGs and catalog.csv, downsamples each image to 64x64 by area averaging
(PIL's BOX filter, which averages every source pixel that falls in a target pixel), and writes
src/hyrax/datasets/data/decals_rings_64.npz: `images` (376, 3, 64, 64) uint8, channel order g, r, z as
rendered by Galaxy Zoo (stored as the JPEG's R, G, B), and the catalog columns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SIZE = 64
HERE = Path(__file__).resolve().parent
SOURCE = (
    Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data" / "gz_decals_rings"
)
OUTPUT = HERE.parent / "src" / "hyrax" / "datasets" / "data" / "decals_rings_64.npz"

RENAME = {
    "iauname": "object_id",
    "smooth-or-featured_featured-or-disk_fraction": "featured_or_disk_fraction",
    "disk-edge-on_no_fraction": "not_edge_on_fraction",
    "has-spiral-arms_no_fraction": "no_spiral_arms_fraction",
}


def main() -> None:
    catalog = pd.read_csv(SOURCE / "catalog.csv")
    images = np.empty((len(catalog), 3, SIZE, SIZE), dtype=np.uint8)
    for row, filename in enumerate(catalog["filename"]):
        with Image.open(SOURCE / filename) as image:
            small = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX)
        images[row] = np.asarray(small).transpose(2, 0, 1)
    columns = {
        RENAME.get(name, name): catalog[name].to_numpy() for name in catalog.columns if name != "filename"
    }
    columns["object_id"] = columns["object_id"].astype(str)
    np.savez_compressed(OUTPUT, images=images, **columns)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.1f} MB, {len(catalog)} galaxies)")


if __name__ == "__main__":
    main()
