"""What the map tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_map_run(directory: Path, coordinates: np.ndarray) -> Path:
    """A reduce_dimensions-like run (object ids p0, p1, ...) holding these 2-D or 3-D coordinates."""
    from hyrax.results.store import ResultWriter

    coordinates = np.asarray(coordinates, dtype=np.float32)
    with ResultWriter(directory, coordinates.shape[1:], "float32") as writer:
        writer.write(np.char.add("p", np.arange(len(coordinates)).astype(str)), coordinates)
    return directory
