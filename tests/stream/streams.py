"""A stream that is not Kafka, and a small model, for the session tests (named by import path in configs).

``CountingStream`` yields objects ``obj0``, ``obj1``, ... (``n_objects`` of them; false: without end), each
an ``image`` made from its number, waiting ``delay`` seconds before each (a slow stream to kill mid-run).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import IterableDataset

from hyrax.datasets.dataset import HyraxDataset
from hyrax.models import hyrax_model


def image_of(number: int) -> np.ndarray:
    rng = np.random.default_rng(number)
    return rng.normal(size=(1, 8, 8)).astype(np.float32)


class CountingStream(HyraxDataset, IterableDataset):
    def __init__(self, config, data_location=None):
        limit = config.get("n_objects", 100)
        self.limit = None if limit is False else int(limit)
        self.delay = float(config.get("delay", 0.0))
        self.repeat = int(
            config.get("repeat", 1)
        )  # each object sent this many times (a producer's duplicates)
        super().__init__(config, None)

    def __iter__(self):
        number = 0
        while self.limit is None or number < self.limit:
            if self.delay:
                time.sleep(self.delay)
            for _ in range(self.repeat):
                yield {"object_id": f"obj{number}", "image": image_of(number)}
            number += 1


@hyrax_model
class TinyEncoder(nn.Module):
    """An image -> 4 numbers -> the image again; its encoding is what infer writes."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        size = int(np.prod(data_sample.shape[1:]))
        self.encode = nn.Linear(size, 4)
        self.decode = nn.Linear(4, size)

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"].astype(np.float32)

    def forward(self, x):
        return self.encode(torch.flatten(x, 1))

    def infer_batch(self, x):
        return self(x)

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = ((self.decode(self(x)) - torch.flatten(x, 1)) ** 2).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}


@hyrax_model
class TinyHeads(TinyEncoder):
    """TinyEncoder (its weights load) whose infer_batch returns a dict: the encoding and its norm."""

    def infer_batch(self, x):
        z = self(x)
        return {"data": z, "norm": torch.linalg.vector_norm(z, dim=1, keepdim=True).double()}
