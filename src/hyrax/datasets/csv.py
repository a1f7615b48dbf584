"""``HyraxCSVDataset``: a CSV table, every column a field.

The object id is the ``data_set.object_id_column_name`` column (default ``object_id``); a table without
one uses the row number.

    [data_request.train.catalog]
    dataset_class = "HyraxCSVDataset"
    data_location = "./catalog.csv"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.dataset import HyraxDataset
from hyrax.errors import DataError


class HyraxCSVDataset(HyraxDataset):
    """One field per column of the CSV file at ``data_location``."""

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        import pandas as pd

        if data_location is None:
            raise DataError("HyraxCSVDataset needs data_location: the path of the CSV file.")
        path = Path(data_location).expanduser()
        if not path.is_file():
            raise DataError(f"HyraxCSVDataset: CSV file '{path}' does not exist.")
        try:
            table = pd.read_csv(path)
        except Exception as error:  # pandas raises many kinds for a malformed file
            raise DataError(f"HyraxCSVDataset: cannot read '{path}': {error}.") from error
        id_column = get_setting(config, "data_set.object_id_column_name") or "object_id"
        columns = {str(name): table[name] for name in table.columns}  # kept compact by HyraxDataset
        columns["object_id"] = (
            table[id_column].astype(str) if id_column in table.columns else np.arange(len(table)).astype(str)
        )
        self._length = len(table)
        super().__init__(config, path, columns)

    def __len__(self) -> int:
        return self._length
