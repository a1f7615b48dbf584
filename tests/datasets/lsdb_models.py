"""A small model over catalog columns, for streamed HATS catalogs (named by import path in configs; also
used by benchmarks/hats_stream.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hyrax.models import hyrax_model


@hyrax_model
class ColumnEncoder(nn.Module):
    """ra, dec and (when the stream has it) mag -> 2 numbers -> the columns again."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        width = int(data_sample.shape[1])
        self.encode = nn.Linear(width, 2)
        self.decode = nn.Linear(2, width)

    @staticmethod
    def prepare_inputs(batch):
        fields = batch["data"]
        names = [n for n in ("ra", "dec", "mag") if n in fields]
        columns = [np.asarray(fields[n], dtype=np.float32) for n in names]
        scaled = [columns[0] / 360.0, (columns[1] + 90.0) / 180.0, *[(c - 20.0) / 5.0 for c in columns[2:]]]
        return np.stack(scaled, axis=1)

    def forward(self, x):
        return self.encode(x)

    def infer_batch(self, x):
        return self(x)

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = ((self.decode(self(x)) - x) ** 2).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}


__all__ = ["ColumnEncoder", "torch"]
