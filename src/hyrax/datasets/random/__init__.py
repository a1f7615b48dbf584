"""``HyraxRandomDataset``: seeded random images, labels and metadata. The data layer's test double.

Its ``[data_set.HyraxRandomDataset]`` table sets ``size``, ``shape``, ``seed``, ``provided_labels``
(values the ``label`` field draws from), ``metadata_fields`` (extra random float fields) and
``number_invalid_values`` values replaced by ``invalid_value_type`` ("nan", "inf", "-inf", or "none":
a missing value, which in a float image is NaN, as in the published Hyrax).

>>> from hyrax.config import ConfigManager
>>> dataset = HyraxRandomDataset(ConfigManager().config)
>>> len(dataset), dataset.get_image(0).shape, dataset.get_object_id(3)
(100, (2, 5, 5), '3')
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.dataset import HyraxDataset
from hyrax.errors import DataError

_INVALID = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "none": np.nan}


class HyraxRandomDataset(HyraxDataset):
    """Fields: ``image``, ``object_id`` ("0", "1", ...), ``label`` if provided_labels, metadata fields."""

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        settings = config["data_set"]["HyraxRandomDataset"]
        size, shape = int(settings["size"]), tuple(int(s) for s in settings["shape"])
        if size < 1:
            raise DataError(f"data_set.HyraxRandomDataset.size must be at least 1, got {size}.")
        rng = np.random.default_rng(settings["seed"])
        self.images = rng.random((size, *shape), dtype=np.float32)
        invalid = int(settings["number_invalid_values"])
        if invalid:
            kind = settings["invalid_value_type"]
            if kind not in _INVALID:
                raise DataError(
                    f'data_set.HyraxRandomDataset.invalid_value_type must be "nan", "inf", "-inf" or "none", got {kind!r}.'
                )
            positions = rng.choice(self.images.size, size=min(invalid, self.images.size), replace=False)
            self.images.reshape(-1)[positions] = _INVALID[kind]
        columns: dict[str, np.ndarray] = {"object_id": np.arange(size).astype(str)}
        labels = get_setting(settings, "provided_labels")
        if labels is not None:
            columns["label"] = np.asarray(labels)[rng.integers(0, len(labels), size)]
        for name in get_setting(settings, "metadata_fields") or []:
            columns[name] = rng.random(size)
        super().__init__(config, data_location, columns)

    def __len__(self) -> int:
        return len(self.images)

    def get_image(self, idx: int) -> np.ndarray:
        return self.images[idx]
