"""``AlertParquetDataset``: alerts exported by a broker as Parquet (Fink's and the ZTF archive's layout: one
row per alert, the alert's fields as columns, records such as ``candidate`` as structs, cutout stamps as
binary gzipped FITS), read as map-style samples, for training on archived alerts the model then serves
on the stream.

Each row decodes as a streamed alert does (:func:`hyrax.stream.alerts.flatten`): ``image`` (the science,
template and difference stamps stacked), ``object_id``, ``alert_id`` and every scalar, nested ones as
``<record>.<field>`` (``candidate.magpsf``). ``data_location``: a Parquet file or a directory of them.
Rows are read a row group at a time (the last one kept), so an archive is never held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.datasets.dataset import HyraxDataset
from hyrax.errors import ConfigError, DataError


class AlertParquetDataset(HyraxDataset):
    """Alerts from Parquet exports; fields ``image``, ``object_id``, ``alert_id`` and the alert's scalars."""

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        import pyarrow.parquet as pq

        if not data_location:
            raise ConfigError(
                "AlertParquetDataset needs data_location: a Parquet file of alerts, or a directory of them."
            )
        location = Path(data_location).expanduser()
        files = sorted(location.rglob("*.parquet")) if location.is_dir() else [location]
        if not files or not files[0].is_file():
            raise ConfigError(f"AlertParquetDataset: no Parquet files at data_location '{location}'.")
        self._files = [pq.ParquetFile(path) for path in files]
        self._paths = files
        groups = [(f, g) for f in range(len(files)) for g in range(self._files[f].num_row_groups)]
        sizes = [self._files[f].metadata.row_group(g).num_rows for f, g in groups]
        self._groups = groups
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._cached: tuple[int, list[dict]] | None = None
        self._sample: tuple[int, dict[str, Any]] | None = None
        super().__init__(config, location)
        self._field_names = sorted(self._decoded(0)) if len(self) else []

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _decoded(self, idx: int) -> dict[str, Any]:
        from hyrax.stream.alerts import AlertError, flatten

        idx = int(idx)
        if self._sample is not None and self._sample[0] == idx:
            return self._sample[1]
        if not 0 <= idx < len(self):
            raise IndexError(f"AlertParquetDataset has {len(self)} alerts; row {idx} asked")
        group = int(np.searchsorted(self._starts, idx, side="right") - 1)
        if self._cached is None or self._cached[0] != group:
            file, number = self._groups[group]
            self._cached = (group, self._files[file].read_row_group(number).to_pylist())
        try:
            sample = flatten(self._cached[1][idx - self._starts[group]])
        except AlertError as error:
            file, _ = self._groups[group]
            raise DataError(f"Alert {idx} (in {self._paths[file]}): {error}") from None
        self._sample = (idx, sample)
        return sample

    def fields(self) -> list[str]:
        return sorted(set(super().fields()) | set(self._field_names))

    def getter(self, field: str):
        if field in self._field_names and not callable(getattr(self, f"get_{field}", None)):
            return lambda idx: self._decoded(idx)[field]
        return super().getter(field)

    def get_image(self, idx: int) -> np.ndarray:
        sample = self._decoded(idx)
        if "image" not in sample:
            raise DataError(
                f"Alert {idx} has no science, template and difference stamps to stack into image."
            )
        return sample["image"]

    def get_object_id(self, idx: int) -> str:
        return str(self._decoded(idx)["object_id"])

    def get_alert_id(self, idx: int):
        return self._decoded(idx)["alert_id"]
