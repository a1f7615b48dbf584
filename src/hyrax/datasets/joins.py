"""Joining a secondary dataset onto the primary by id: a vectorized map, cached on disk.

The map says, for every primary row, which secondary row holds the same id (-1: none; a left outer
join). It is built with a hash index over the secondary ids (no Python loop per row) and cached under
``data_set.cache_dir`` keyed by a fingerprint of both id columns, so a rebuild only hashes the ids.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.config import get_setting
from hyrax.errors import DataError

logger = logging.getLogger(__name__)


def cache_dir(config: Mapping) -> Path:
    """``data_set.cache_dir``, else ``$XDG_CACHE_HOME/hyrax``, else ``~/.cache/hyrax``."""
    configured = get_setting(config, "data_set.cache_dir")
    if configured is not None:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hyrax"


def _as_strings(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    return ids if ids.dtype.kind == "U" else ids.astype(str)


def fingerprint(primary_ids: np.ndarray, secondary_ids: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for ids in (primary_ids, secondary_ids):
        digest.update(str(ids.shape).encode() + ids.dtype.str.encode())
        digest.update(np.ascontiguousarray(ids).view(np.uint8))
    return digest.hexdigest()


def build_join(primary_ids: np.ndarray, secondary_ids: np.ndarray, where: str, config: Mapping) -> np.ndarray:
    """Row of the secondary for each primary id (-1 where it has none). Duplicate secondary ids are an
    error that lists some of them."""
    import pandas as pd

    primary_ids, secondary_ids = _as_strings(primary_ids), _as_strings(secondary_ids)
    key = fingerprint(primary_ids, secondary_ids)
    path = cache_dir(config) / "joins" / f"{key}.npy"
    if path.is_file():
        try:
            rows = np.load(path)
            if rows.shape == primary_ids.shape:
                logger.debug("%s: join map read from cache %s", where, path)
                return rows
        except (OSError, ValueError):
            logger.warning("%s: ignoring an unreadable join cache %s", where, path)
    index = pd.Index(secondary_ids)
    if not index.is_unique:
        duplicated = pd.unique(secondary_ids[index.duplicated()])
        raise DataError(
            f"{where}: the join field has {len(duplicated)} id(s) that occur more than once "
            f"(e.g. {', '.join(map(str, duplicated[:5]))}); a joined catalog needs one row per id. "
            f"Remove the duplicate rows."
        )
    rows = index.get_indexer(primary_ids).astype(np.int64)
    _save_atomic(path, rows)
    return rows


def _save_atomic(path: Path, rows: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(temporary, rows)
        os.replace(temporary, path)
    except OSError as error:  # a cache that cannot be written only costs time
        logger.warning("could not cache a join map in %s: %s", path.parent, error)
