"""What a user of benchmarks/scale.py would have written: a streaming dataset and a Parquet catalog.

``ScaleDataset`` makes each object's 64 numbers from its index when asked (nothing is held per object,
so the benchmark measures Hyrax's memory, not the dataset's). The numbers look like latent vectors:
100 clusters on a 10-dimensional subspace plus noise, every object distinct. Its ids are 17-digit
numbers, like HSC object ids.

The catalog joined to it (``object_id``, ``ra``, ``dec``, ``mag``, in another order) is a Parquet file
read by Hyrax's ParquetDataset:

    [data_request.infer.data]
    dataset_class = "scale_user.ScaleDataset"
    data_location = "<work>/data"
    primary_id_field = "object_id"

    [data_request.infer.catalog]
    dataset_class = "ParquetDataset"
    data_location = "<work>/catalog.parquet"
    join_field = "object_id"
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hyrax.datasets import HyraxDataset

ID_BASE = 40_000_000_000_000_000
#: Noise tables: (index % A, index // A % B) is distinct for every index below A * B (16.7M).
TABLE_A, TABLE_B = 4093, 4091


def object_id(index):
    """The id of object ``index`` (numpy arrays too)."""
    return ID_BASE + 7 * np.asarray(index, dtype=np.int64)


class ScaleDataset(HyraxDataset):
    """``n_objects`` (from ``<data_location>/scale.json``) vectors of 64 float32, made on demand."""

    def __init__(self, config, data_location=None):
        info = json.loads((Path(data_location) / "scale.json").read_text())
        self.count = int(info["n_objects"])
        rng = np.random.default_rng(int(info.get("seed", 0)))
        basis = rng.standard_normal((10, 64)).astype(np.float32) / np.sqrt(10)
        self.centres = (rng.standard_normal((100, 10)).astype(np.float32) * 4) @ basis
        self.low_a = (0.7 * rng.standard_normal((TABLE_A, 10)).astype(np.float32)) @ basis
        self.low_b = (0.7 * rng.standard_normal((TABLE_B, 10)).astype(np.float32)) @ basis
        self.high_a = 0.07 * rng.standard_normal((TABLE_A, 64)).astype(np.float32)
        self.high_b = 0.07 * rng.standard_normal((TABLE_B, 64)).astype(np.float32)
        super().__init__(config, data_location)

    def __len__(self):
        return self.count

    def get_object_id(self, idx):
        return str(ID_BASE + 7 * int(idx))

    def get_data(self, idx):
        idx = int(idx)
        a, b = idx % TABLE_A, idx // TABLE_A % TABLE_B
        cluster = (idx * 2654435761) % 4294967296 % 100
        return self.centres[cluster] + self.low_a[a] + self.low_b[b] + self.high_a[a] + self.high_b[b]

    def display(self, idx):
        """The map's thumbnail: the 64 numbers as an 8x8 picture."""
        return self.get_data(idx).reshape(1, 8, 8)


def write_catalog(path: Path, count: int, block: int = 1_000_000, seed: int = 0) -> None:
    """The catalog of objects 0..count-1, in a shuffled order (catalogs are never in the dataset's
    order), written a block at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("object_id", pa.string()), ("ra", pa.float64()), ("dec", pa.float64()), ("mag", pa.float32())]
    )
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, count, block):
            rows = start + rng.permutation(min(block, count - start))
            table = pa.table(
                {
                    "object_id": pa.array(object_id(rows).astype(str)),
                    "ra": rng.uniform(0, 360, len(rows)),
                    "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, len(rows)))),
                    "mag": rng.normal(22, 1.5, len(rows)).astype(np.float32),
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=256 * 1024)
