"""``HyraxDataset``: the contract every dataset follows, built-in or written in a notebook cell.

A dataset is a class with ``__len__`` and one ``get_<field>(idx)`` method per field, each returning a
numpy array, a scalar or a string for the object at row ``idx``. ``get_object_id`` is the primary id.
Subclassing registers the class by its name, so ``dataset_class = "MyDataset"`` finds it::

    import numpy as np
    from hyrax.datasets import HyraxDataset

    class MyDataset(HyraxDataset):
        def __init__(self, config, data_location=None):
            self.images = np.load(data_location)
            super().__init__(config, data_location)

        def __len__(self):
            return len(self.images)

        def get_image(self, idx):
            return self.images[idx]

        def get_object_id(self, idx):
            return str(idx)

Optional hooks: ``collate(samples)`` or ``collate_<field>(samples) -> {field: batch, ...}`` (samples: a
list of dicts of this dataset's fields; the result may add keys such as ``<field>_mask``) to batch a
field yourself,
``augment_<field>(data, idx, rng_seed)`` for training-time augmentation, ``on_epoch_start(verb)``,
``display(idx)`` for the visualizer. A metadata table (astropy Table or pandas DataFrame) passed to
``super().__init__`` makes each of its columns a field. Its string columns are kept in one Arrow buffer
each (:class:`~hyrax.datasets.ids.StringColumn`), not as a Python object per row: a 10M-row catalog
costs its bytes, not ten times as much, and DataLoader workers share it without copying.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.datasets.ids import StringColumn, compact
from hyrax.errors import DataError
from hyrax.plugins import DATASETS, did_you_mean

#: Methods named get_* that are not fields.
_NOT_FIELDS = frozenset({"get_metadata", "get_fields"})


class HyraxDataset:
    """Base class of Hyrax datasets; see the module documentation for the contract.

    Args:
        config: the resolved Hyrax config (with this dataset's ``dataset_config`` applied).
        data_location: where the data lives (a path), or None.
        metadata_table: optional astropy Table or pandas DataFrame, one row per object; each column
            becomes a field (``get_<column>``) unless the class defines that getter itself.
    """

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register:  # a base class for other datasets passes register=False
            DATASETS.register(cls.__name__, cls)

    def __init__(self, config: Mapping, data_location: str | Path | None = None, metadata_table: Any = None):
        # Older Hyrax datasets call super().__init__(config, metadata_table): accept that order too.
        if metadata_table is None and data_location is not None and not isinstance(data_location, str | Path):
            data_location, metadata_table = None, data_location
        self.config = config
        if data_location is not None or not hasattr(self, "data_location"):
            self.data_location = data_location
        self._metadata_columns = _columns_of(metadata_table)

    # -- fields ----------------------------------------------------------------------------------
    @classmethod
    def getter_fields(cls) -> list[str]:
        """Fields the class defines as ``get_<field>`` methods."""
        return sorted(
            name[4:]
            for name in dir(cls)
            if name.startswith("get_") and name not in _NOT_FIELDS and callable(getattr(cls, name))
        )

    def fields(self) -> list[str]:
        """Every field: getter methods and metadata columns."""
        metadata = getattr(self, "_metadata_columns", {})
        return sorted(set(self.getter_fields()) | set(metadata))

    def getter(self, field: str):
        """The function ``idx -> value`` for ``field``; a clear error when there is none."""
        method = getattr(self, f"get_{field}", None)
        if callable(method):
            return method
        column = getattr(self, "_metadata_columns", {}).get(field)
        if column is not None:
            return column.__getitem__
        raise DataError(
            f"{type(self).__name__} has no field '{field}'.{did_you_mean(field, self.fields())} "
            f"Its fields: {', '.join(self.fields()) or '(none)'}. Request one of those in `fields`, or add a "
            f"method get_{field}(self, idx) to the class."
        )

    def column(self, field: str) -> np.ndarray:
        """All values of ``field`` as one array (a metadata column directly; otherwise one call per row).

        Datasets with a fast way to read a whole column (a catalog) should override this: joins and
        stratified splits use it.
        """
        metadata = getattr(self, "_metadata_columns", {})
        if field in metadata and not callable(getattr(self, f"get_{field}", None)):
            return metadata[field]
        getter = self.getter(field)
        return np.asarray([getter(i) for i in range(len(self))])

    def metadata(self, indices: Any, fields: list[str] | None = None) -> dict[str, np.ndarray]:
        """Metadata columns at ``indices`` (all metadata columns when ``fields`` is None)."""
        metadata = getattr(self, "_metadata_columns", {})
        names = list(metadata) if fields is None else fields
        return {name: take(metadata[name], indices) for name in names if name in metadata}

    # -- hooks with defaults ---------------------------------------------------------------------
    def on_epoch_start(self, verb: str) -> None:
        """Called before every epoch of ``verb`` ("train", "infer"...); the default does nothing."""

    def augment_cache_key(self, idx: int, rng_seed: int) -> Any:
        """A hashable key naming the result of ``augment_<field>(data, idx, rng_seed)``, to keep and reuse
        it (``data_set.use_cache``; :mod:`hyrax.datasets.augment_cache`), or None (the default): augment
        afresh every time. Override it when augmentation is deterministic and costly."""
        return None

    def __repr__(self) -> str:
        try:
            size = len(self)
        except Exception:  # __len__ of a half-built dataset must not break repr
            size = "?"
        return f"{type(self).__name__}(len={size}, data_location={self.data_location!r})"


def take(column: Any, indices: Any) -> np.ndarray:
    """``column[indices]`` as numpy, for a numpy array or a :class:`StringColumn` (which gathers only
    those rows instead of converting every one)."""
    if isinstance(column, StringColumn):
        return column[np.atleast_1d(indices)] if np.ndim(indices) else np.asarray(column[int(indices)])
    return np.asarray(column)[indices]


def _columns_of(table: Any) -> dict[str, Any]:
    """astropy Table / pandas DataFrame / mapping of columns -> {name: numpy array or StringColumn}."""
    if table is None:
        return {}
    if hasattr(table, "colnames"):  # astropy Table
        return {name: compact(np.asarray(table[name])) for name in table.colnames}
    if hasattr(table, "columns") and hasattr(table, "to_numpy"):  # pandas DataFrame
        return {str(name): compact(table[name]) for name in table.columns}
    if isinstance(table, Mapping):
        return {str(name): compact(values) for name, values in table.items()}
    raise DataError(
        f"metadata_table must be an astropy Table, a pandas DataFrame or a dict of columns, got {type(table).__name__}."
    )
