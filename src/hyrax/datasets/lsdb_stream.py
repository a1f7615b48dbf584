"""``LSDBStreamDataset``: a HATS catalog streamed through LSDB, a chunk of partitions at a time, in batches
of one size, for ``train_stream`` and ``infer_stream`` (nothing is copied; the HEALPix partitioning, and
with it a sky region, stays LSDB's).

>>> # import lsdb
>>> # from hyrax import Hyrax
>>> # from hyrax.datasets import LSDBStreamDataset
>>> # location = LSDBStreamDataset.register_catalog("bright", lsdb.open_catalog(path).query("mag < 20"))
>>> # h = Hyrax()
>>> # h.config["data_request"] = {"infer_stream": {"data": {"dataset_class": "LSDBStreamDataset",
>>> #     "data_location": location, "primary_id_field": "object_id", "fields": ["ra", "dec", "mag"]}}}
>>> # with h.infer_stream() as session:
>>> #     for batch, results in session: ...

``data_location``: an ``lsdb://<name>`` handle from :meth:`LSDBStreamDataset.register_catalog` (a
catalog made in this process: a query, a cross-match), or the directory of a HATS catalog, opened with
``lsdb.open_catalog(path, **open_catalog_kwargs)``. ``[data_set.LSDBStreamDataset]``: ``stream_type``
"catalog" (``lsdb.streams.CatalogStream``: every row once, then the stream ends; for inference) or
"infinite" (``InfiniteStream``: chunks of partitions drawn at random without end; for training);
``partitions_per_chunk``, ``shuffle``, ``seed``, ``use_dask_client`` / ``dask_client_address`` as
LSDB's streams take them; ``cone`` or ``box``: only the partitions that region touches are read.

Memory: the stream holds the chunk being cut into batches, the next chunk (LSDB computes it before
handing over the current one, in the background with a Dask client) and fewer than ``batch_size`` rows
carried between chunks: about ``2 x partitions_per_chunk`` of the catalog's largest partition plus a
batch, whatever the catalog's size. Batches are ``data_loader.batch_size`` rows across the ragged
chunks; only the last of a one-pass stream is shorter.

Iterating the dataset itself gives lists of ``batch_size`` row dicts, as the published Hyrax does; the
stream provider of the sessions reads :meth:`frame_batches` (the same batches, as DataFrames) and turns
columns into arrays without a Python object per row.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from hyrax.config import get_setting
from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.sky_region import region_of, search_filter
from hyrax.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

LSDB_URI_PREFIX = "lsdb://"
SETTINGS = "data_set.LSDBStreamDataset"

#: Catalogs registered in this process by name (``lsdb://<name>``). Sessions read a stream in the
#: process that registered it (a stream dataset is never handed to DataLoader workers).
_CATALOGS: dict[str, Any] = {}


class LSDBStreamDataset(HyraxDataset, IterableDataset):
    """Rows of a HATS catalog, streamed through LSDB in batches of ``data_loader.batch_size``."""

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        settings = dict(get_setting(config, SETTINGS) or {})
        if data_location is None or data_location is False:
            raise DataError(
                "LSDBStreamDataset needs data_location: 'lsdb://<name>' from LSDBStreamDataset.register_catalog"
                "(name, catalog), or the directory of a HATS catalog."
            )
        self.stream_type = str(settings.get("stream_type", "catalog")).lower()
        if self.stream_type not in ("catalog", "infinite"):
            raise ConfigError(
                f"{SETTINGS}.stream_type = {settings.get('stream_type')!r}: choose 'catalog' (one pass, every row "
                f"once) or 'infinite' (chunks drawn at random without end)."
            )
        chunk = settings.get("partitions_per_chunk", 1)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ConfigError(f"{SETTINGS}.partitions_per_chunk = {chunk!r}: give a whole number, 1 or more.")
        self.partitions_per_chunk = chunk
        self.shuffle = bool(settings.get("shuffle", True))
        seed = settings.get("seed", False)
        self.seed = None if seed is False or seed is None else int(seed)
        self.use_dask_client = bool(settings.get("use_dask_client", True))
        address = settings.get("dask_client_address", False)
        self.dask_client_address = None if address is False or address is None else str(address)
        self.batch_size = int(get_setting(config, "data_loader.batch_size"))
        if self.batch_size < 1:
            raise ConfigError(f"data_loader.batch_size = {self.batch_size}: give a whole number, 1 or more.")
        self.region = region_of(settings, SETTINGS)
        self.catalog = self._open_catalog(str(data_location), dict(settings.get("open_catalog_kwargs") or {}))
        if self.catalog.npartitions < 1:
            raise DataError(f"LSDBStreamDataset: {data_location} has no partitions{self._in_region()}.")
        self._stop = threading.Event()
        self._iterator: Iterator | None = None  # the pass in progress (shared by peek and iteration)
        self._held: deque = deque()  # frames taken from LSDB and not yet handed out, in order
        self._owned_client = None
        #: Most rows this dataset held at once: the chunk being cut, chunks kept back, rows carried to the
        #: next batch (LSDB holds one more chunk, the next, computed ahead).
        self.peak_rows_held = 0
        super().__init__(config, str(data_location))

    # -- the catalog -------------------------------------------------------------------------------
    def _open_catalog(self, location: str, options: dict):
        import lsdb

        if location.startswith(LSDB_URI_PREFIX):
            catalog = self._lookup_catalog(location[len(LSDB_URI_PREFIX) :])
            if options:
                logger.warning(
                    "%s.open_catalog_kwargs is not used for %s: that catalog is already open.",
                    SETTINGS,
                    location,
                )
            where = search_filter(self.region)
            return catalog.search(where) if where is not None else catalog
        path = Path(location).expanduser()
        if not path.exists():
            raise DataError(f"LSDBStreamDataset: '{path}' does not exist.")
        if self.region and "search_filter" in options:
            raise ConfigError(
                f"{SETTINGS} sets {next(iter(self.region))} and open_catalog_kwargs.search_filter: keep one."
            )
        where = search_filter(self.region)
        if where is not None:
            options["search_filter"] = where
        try:
            return lsdb.open_catalog(path, **options)
        except (OSError, ValueError, TypeError) as error:
            raise DataError(f"LSDBStreamDataset: cannot open '{path}' as a HATS catalog ({error}).") from None

    def _in_region(self) -> str:
        return (
            f" in {SETTINGS}.{next(iter(self.region))} = {next(iter(self.region.values()))}"
            if self.region
            else ""
        )

    @classmethod
    def register_catalog(cls, name: str, catalog: Any) -> str:
        """Keep ``catalog`` (an ``lsdb.Catalog``) under ``name`` in this process; returns ``"lsdb://<name>"``,
        the ``data_location`` that streams it.

        >>> # LSDBStreamDataset.register_catalog("bright", catalog.query("mag < 20"))  # 'lsdb://bright'
        """
        if not isinstance(name, str) or not name.strip() or "/" in name or any(c.isspace() for c in name):
            raise ValueError(
                f"register_catalog: name {name!r} must be a non-empty string without '/' or spaces."
            )
        import lsdb

        if not isinstance(catalog, lsdb.Catalog):
            raise TypeError(
                f"register_catalog expects an lsdb.Catalog, got {type(catalog).__name__}: open one with "
                f"lsdb.open_catalog(path), or make one with lsdb.from_dataframe(...)."
            )
        if name in _CATALOGS and _CATALOGS[name] is not catalog:
            logger.warning("register_catalog: '%s' now names another catalog.", name)
        _CATALOGS[name] = catalog
        return f"{LSDB_URI_PREFIX}{name}"

    @classmethod
    def unregister_catalog(cls, name: str) -> None:
        """Forget the catalog registered as ``name`` (nothing if there is none)."""
        _CATALOGS.pop(name, None)

    @classmethod
    def clear_catalogs(cls) -> None:
        """Forget every registered catalog."""
        _CATALOGS.clear()

    @classmethod
    def registered_catalogs(cls) -> list[str]:
        """The names registered in this process, sorted."""
        return sorted(_CATALOGS)

    @classmethod
    def _lookup_catalog(cls, name: str):
        try:
            return _CATALOGS[name]
        except KeyError:
            from hyrax.plugins import did_you_mean

            raise DataError(
                f"LSDBStreamDataset: no catalog is registered as '{name}'.{did_you_mean(name, list(_CATALOGS))} "
                f"Registered: {', '.join(sorted(_CATALOGS)) or '(none)'}. Register it in this process first: "
                f"LSDBStreamDataset.register_catalog('{name}', catalog)."
            ) from None

    # -- fields ------------------------------------------------------------------------------------
    def fields(self) -> list[str]:
        """Every column, and each nested column's subcolumns as ``<column>.<subcolumn>``."""
        nested = set(self.catalog.nested_columns)
        names = [c for c in self.catalog.columns if c not in nested]
        for column in nested:
            names += [f"{column}.{sub}" for sub in self.catalog[column].columns]
        return sorted(names)

    def columns_of(self, frame, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Arrays, one row per object of ``frame``, for each field in ``names``: a column as it is; a
        nested subcolumn (``lc.mag``, or the published ``lc_mag``) padded to the batch's longest with zeros
        of its own dtype, beside ``<field>_mask`` (True where a value is real)."""
        nested = set(getattr(frame, "nested_columns", ()) or ())
        out: dict[str, np.ndarray] = {}
        for name in names:
            if name in frame.columns and name not in nested:
                out[name] = frame[name].to_numpy()
                continue
            column, sub = _nested_parts(name, nested)
            if column is None:
                from hyrax.plugins import did_you_mean

                raise DataError(
                    f"LSDBStreamDataset has no field '{name}'.{did_you_mean(name, self.fields())} Its fields: "
                    f"{', '.join(self.fields())}."
                )
            out[name], out[f"{name}_mask"] = _padded(frame[column], sub)
        return out

    # -- the stream --------------------------------------------------------------------------------
    def _client(self):
        if not self.use_dask_client:
            return None
        from dask.distributed import Client, get_client

        if self.dask_client_address:
            if self._owned_client is None:
                self._owned_client = Client(self.dask_client_address)
            return self._owned_client
        try:
            return get_client()
        except ValueError:  # none active: LSDB computes each chunk in this thread
            return None

    def _make_stream(self):
        from lsdb.streams import CatalogStream, InfiniteStream

        if self.stream_type == "infinite":
            return InfiniteStream(
                self.catalog,
                client=self._client(),
                partitions_per_chunk=self.partitions_per_chunk,
                seed=self.seed,
            )
        return CatalogStream(
            self.catalog,
            client=self._client(),
            partitions_per_chunk=self.partitions_per_chunk,
            shuffle=self.shuffle,
            seed=self.seed,
        )

    def _next_frame(self):
        """The next frame of the pass (held ones first); None at the end of a one-pass stream."""
        if self._held:
            return self._held.popleft()
        if self._iterator is None:
            self._iterator = iter(self._make_stream())
        try:
            frame = next(self._iterator)
        except StopIteration:
            self._iterator = None  # the next iteration starts a new pass
            return None
        return frame

    def _note_held(self, extra: int) -> None:
        held = extra + sum(len(f) for f in self._held)
        self.peak_rows_held = max(self.peak_rows_held, held)

    def frame_batches(self) -> Iterator[Any]:
        """DataFrames of exactly ``batch_size`` rows, across chunks; the last of a one-pass stream may be
        shorter. Stops (after the batch in hand) when :meth:`stop` is called; rows taken from LSDB and not
        handed out are kept for the next iteration, in order."""
        import pandas as pd

        pieces: list = []  # parts of the batch being made, fewer than batch_size rows in all
        count = 0
        frame, start = None, 0
        try:
            while not self._stop.is_set():
                frame, start = self._next_frame(), 0
                if frame is None:
                    break
                self._note_held(len(frame) + count)
                while start < len(frame):
                    take = min(self.batch_size - count, len(frame) - start)
                    pieces.append(frame.iloc[start : start + take])
                    count, start = count + take, start + take
                    if count == self.batch_size:
                        batch = pieces[0] if len(pieces) == 1 else pd.concat(pieces)
                        pieces, count = [], 0
                        yield batch
                frame = None
            if pieces:  # the end of a pass, or a stop: the one short batch
                batch = pieces[0] if len(pieces) == 1 else pd.concat(pieces)
                pieces, count = [], 0
                yield batch
        finally:  # a consumer that stopped early: what it did not get is kept, in order
            rest = [] if frame is None or start >= len(frame) else [frame.iloc[start:]]
            if pieces or rest:
                self._held.extendleft(reversed(pieces + rest))

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        """Batches as lists of row dicts (``{"ra": ..., "dec": ..., "lc": <its nested frame>}``), as the
        published Hyrax iterates; :meth:`frame_batches` gives the same batches as DataFrames."""
        for frame in self.frame_batches():
            yield frame.to_dict(orient="records")

    def peek_frame(self, rows: int = 1):
        """The first ``rows`` rows still to come (kept in the stream), as a DataFrame: sizes a model."""
        pulled = []
        while not pulled or len(pulled[-1]) == 0:  # past empty partitions
            frame = self._next_frame()
            if frame is None:
                self._held.extendleft(reversed(pulled))
                raise DataError(f"LSDBStreamDataset: {self.data_location} has no rows{self._in_region()}.")
            pulled.append(frame)
        self._held.extendleft(reversed(pulled))
        return pulled[-1].iloc[:rows]

    def peek(self) -> dict[str, Any]:
        """The first row still to come, as a dict (kept in the stream)."""
        return self.peek_frame(1).to_dict(orient="records")[0]

    peek_sample = peek  # the published name

    def stop(self) -> None:
        """End iteration after the batch in hand (any thread); LSDB cannot be interrupted inside a chunk."""
        self._stop.set()

    def close(self) -> None:
        """Stop, and close the Dask client this dataset made from ``dask_client_address`` (one that was
        already active belongs to its maker). Idempotent."""
        self._stop.set()
        client, self._owned_client = self._owned_client, None
        if client is not None:
            client.close()

    def __len__(self) -> int:
        raise TypeError("LSDBStreamDataset is a stream and has no length.")


def _nested_parts(name: str, nested: set[str]) -> tuple[str | None, str | None]:
    """(column, subcolumn) of a nested field named ``column.sub`` or ``column_sub``."""
    for separator in (".", "_"):
        for column in nested:
            if name.startswith(column + separator) and len(name) > len(column) + 1:
                return column, name[len(column) + 1 :]
    return None, None


def _padded(series, sub: str) -> tuple[np.ndarray, np.ndarray]:
    """One subcolumn of a nested column, a row per object padded to the longest, and its mask."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = series.array.list_array
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = lists.flatten().field(sub).to_numpy(zero_copy_only=False)
    width = int(lengths.max()) if len(lengths) else 0
    mask = np.arange(width)[None, :] < lengths[:, None]
    padded = np.zeros((len(lengths), width), dtype=values.dtype)
    padded[mask] = values
    return padded, mask
