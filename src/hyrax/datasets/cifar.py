"""``HyraxCifarDataset``: CIFAR-10 from its standard python batches, without torchvision.

``data_location`` is the directory that holds ``cifar-10-batches-py/`` (as unpacked from
cifar-10-python.tar.gz) or the batch files themselves. ``[data_set.HyraxCifarDataset]
use_training_data`` chooses the five training batches (50,000 images) or the test batch (10,000).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.images import ImagePipeline
from hyrax.errors import DataError

TRAINING = [f"data_batch_{n}" for n in range(1, 6)]
TEST = ["test_batch"]


class HyraxCifarDataset(HyraxDataset):
    """Fields: ``image`` (3x32x32 float32 in [-1, 1]), ``label`` (0-9), ``label_name``, ``object_id``.

    As in the published Hyrax: pixels are normalised to [-1, 1] (torchvision's ``Normalize(0.5, 0.5)``),
    and an object id is the image's position in its set, zero-padded to the width of the set's size
    (test images "00000".."09999", training images "00000".."49999")."""

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        base = Path(
            data_location if data_location is not None else config["general"]["data_dir"]
        ).expanduser()
        folder = base / "cifar-10-batches-py" if (base / "cifar-10-batches-py").is_dir() else base
        training = config["data_set"]["HyraxCifarDataset"]["use_training_data"]
        names = TRAINING if training else TEST
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise DataError(
                f"HyraxCifarDataset: {', '.join(missing)} not found in {folder}. Download cifar-10-python.tar.gz "
                f"from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it into {base} (it makes "
                f"{base / 'cifar-10-batches-py'}), or set data_location to the folder that holds it."
            )
        images, labels = [], []
        for name in names:
            batch = _unpickle(folder / name)
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        self.images = np.concatenate(images)
        label_array = np.concatenate(labels)
        meta = folder / "batches.meta"
        label_names = (
            [n.decode() for n in _unpickle(meta)[b"label_names"]]
            if meta.is_file()
            else [str(i) for i in range(10)]
        )
        width = len(str(len(label_array)))
        columns = {
            "object_id": np.char.zfill(np.arange(len(label_array)).astype(str), width),
            "label": label_array,
            "label_name": np.asarray(label_names)[label_array],
        }
        super().__init__(config, folder, columns)
        # the one image path (crop_to, transform...); "auto" keeps the published [-1, 1] pixels
        self.image_pipeline = ImagePipeline.from_config(config, type(self).__name__, {"normalize": "none"})

    def __len__(self) -> int:
        return len(self.images)

    def get_image(self, idx: int) -> np.ndarray:
        pixels = self.images[idx].astype(np.float32) * np.float32(2 / 255) - np.float32(1)
        return self.image_pipeline(pixels, str(idx))


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="bytes")
    except Exception as error:  # a damaged download
        raise DataError(
            f"HyraxCifarDataset: cannot read {path} ({error}); download the archive again."
        ) from error
