"""Joining a secondary dataset onto the primary by id.

The join map says, for every primary row, which secondary row holds the same id (-1: none; a left
outer join). It is built in one pass over the primary ids, a batch at a time, against an
:class:`~hyrax.datasets.ids.IdIndex` of the secondary ids: 4 bytes per primary row once built, and no
Python object per id at any point. Every match is checked on the ids themselves, not only their hashes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.ids import IdIndex, StringColumn
from hyrax.errors import DataError

logger = logging.getLogger(__name__)


def cache_dir(config: Mapping) -> Path:
    """``data_set.cache_dir``, else ``$XDG_CACHE_HOME/hyrax``, else ``~/.cache/hyrax``."""
    configured = get_setting(config, "data_set.cache_dir")
    if configured is not None:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hyrax"


def secondary_index(dataset: Any, field: str, where: str) -> IdIndex:
    """An id index of a secondary dataset's join field; duplicate ids are an error listing some. A
    table is streamed (its ids are never all in memory; hits are confirmed by reading their rows)."""
    if callable(getattr(dataset, "column_batches", None)) and field in getattr(dataset, "_columns", ()):
        index = IdIndex.build(
            dataset.column_batches(field),
            lambda rows: dataset.read_rows(rows, [field])[field],
            count=len(dataset),
        )
    else:
        values = dataset.column(field)
        column = values if isinstance(values, StringColumn) else StringColumn(values)
        index = IdIndex.build([column.arrow], column.__getitem__, count=len(column))
    count, examples = index.duplicates()
    if count:
        raise DataError(
            f"{where}: the join field has {count} id(s) that occur more than once "
            f"(e.g. {', '.join(examples)}); a joined catalog needs one row per id. Remove the duplicate rows."
        )
    return index


def build_join(primary_batches: Iterable[Any], index: IdIndex, where: str, count: int) -> np.ndarray:
    """Row of the secondary (``index`` of its ids) for each of the ``count`` primary ids, given in row
    order a batch at a time; -1 where it has none. 4 bytes a row (8 past 2**31 secondary rows)."""
    rows = np.empty(count, dtype=np.int32 if len(index) < 2**31 else np.int64)
    start = 0
    for batch in primary_batches:
        found = index.rows_of(batch)
        rows[start : start + len(found)] = found
        start += len(found)
    if start != count:
        raise DataError(f"{where}: the primary dataset gave {start} ids for {count} rows.")
    return rows
