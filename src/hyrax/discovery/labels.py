"""Labels as data: what a scientist said about objects, kept in ``<results_dir>/labels.lance``.

One row per labelling (object_id, label, tag, time, user, run): 1 = interesting, 0 = not, empty = a tag
alone. The table is only ever appended to (one Lance commit per call, one writer at a time across
processes: a crash leaves the labels before it whole), so it is also the history; the latest word on an object counts. Labels belong to objects,
not to a run: they live beside the runs, keyed by object id, so that a re-inference, a new map or a
new ranking keeps them.

>>> import tempfile
>>> book = LabelBook(Path(tempfile.mkdtemp()) / "labels.lance")
>>> book.add(["a", "b"], 1, tag="ring", user="ada")
2
>>> book.add(["b"], 0, user="ada")
1
>>> book.latest()[["object_id", "label", "tag"]].values.tolist()
[['a', 1, 'ring'], ['b', 0, 'ring']]
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from hyrax.errors import ConfigError, DataError, ResultsWriteError
from hyrax.faults import fault_point

LABELS = "labels.lance"
#: Columns of a labels CSV (the map's export): object_id, then label and/or tag.
CSV_COLUMNS = ("object_id", "label", "tag")


def labels_path(config: Mapping) -> Path:
    return Path(config["general"]["results_dir"]).expanduser() / LABELS


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("object_id", pa.string()),
            ("label", pa.int8()),
            ("tag", pa.string()),
            ("time", pa.timestamp("ms", tz="UTC")),
            ("user", pa.string()),
            ("run", pa.string()),
        ]
    )


def label_value(value) -> int | None:
    """1 (interesting), 0 (not) or None (a tag alone) from what a user may write."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "0", "true", "false", "yes", "no", ""):
        text = value.strip().lower()
        return None if text == "" else int(text in ("1", "true", "yes"))
    if isinstance(value, int | np.integer | float | np.floating) and float(value) in (0.0, 1.0):
        return int(value)
    raise DataError(
        f"A label is 1 (interesting), 0 (not interesting) or None with a tag; got {value!r}. "
        f'Write h.label(ids, 1), h.label(ids, 0) or h.label(ids, tag="ring").'
    )


class LabelBook:
    """The labels table: append, and read the latest label of each object or the whole history."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / "_versions").is_dir() and any((self.path / "_versions").glob("*.manifest"))

    def add(
        self,
        object_ids: Iterable,
        label=1,
        tag: str | None = None,
        user: str | None = None,
        run: str | Path | None = None,
    ) -> int:
        """Append one row per id (one commit); returns how many."""
        import lance
        import pyarrow as pa

        from hyrax.datasets.ids import arrow_strings

        ids = arrow_strings(list(object_ids) if not hasattr(object_ids, "__array__") else object_ids)
        value = label_value(label)
        if value is None and not tag:
            raise DataError("A label needs a value (1 or 0) or a tag: h.label(ids, 1, tag='ring').")
        if not len(ids):
            return 0
        count = len(ids)
        now = np.full(count, int(time.time() * 1000), dtype="datetime64[ms]")
        table = pa.Table.from_arrays(
            [
                ids,
                pa.array([value] * count, type=pa.int8()),
                pa.array([tag or ""] * count, type=pa.string()),
                pa.array(now, type=pa.timestamp("ms", tz="UTC")),
                pa.array([user or _user()] * count, type=pa.string()),
                pa.array([str(run or "")] * count, type=pa.string()),
            ],
            schema=_schema(),
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ResultsWriteError(f"Cannot write labels in {self.path.parent}: {error}.") from error
        with self._writer_lock():  # also orders this process's threads: each holds its own open file
            try:
                mode = "append" if self.exists() else "create"
                if mode == "create" and self.path.exists():  # a first write that never committed
                    import shutil

                    shutil.rmtree(self.path)
                # Written, then committed (what lance.write_dataset does in one call), so that the fault
                # point between them is where a kill lands.
                written = lance.fragment.write_fragments(
                    table, str(self.path), schema=_schema(), mode=mode, return_transaction=True
                )
                fault_point("labels.fragment_written")
                lance.LanceDataset.commit(str(self.path), written)
            except OSError as error:
                raise ResultsWriteError(f"Writing labels to {self.path} failed: {error}.") from error
        return count

    def _writer_lock(self):
        """One writer at a time across processes (an OS lock, gone with its process): two first writes would
        both create the table, and a leftover of a killed first write is removed only under it."""
        from hyrax import locks
        from hyrax.errors import HyraxError
        from hyrax.progress import Waiting

        return locks.exclusive(
            self.path.with_name("labels.lock"),
            "label",
            lambda holder: HyraxError(f"{holder} is writing labels to {self.path}."),
            lambda holder: Waiting(f"{holder} is writing labels to {self.path}: waiting for it"),
        )

    def history(self):
        """Every labelling, oldest first, as a DataFrame."""
        import lance
        import pandas as pd

        if not self.exists():
            return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in _EMPTY.items()})
        frame = lance.dataset(str(self.path)).to_table().to_pandas()
        frame["label"] = frame["label"].astype("Int8")
        return frame.sort_values("time", kind="stable").reset_index(drop=True)

    def latest(self):
        """One row per labelled object: its latest label (1/0; <NA> when it has only tags), its latest
        tag, when and by whom it was last labelled, and how many times."""
        frame = self.history()
        if frame.empty:
            frame["times"] = frame["label"].astype("int64")
            return frame
        grouped = frame.groupby("object_id", sort=False)
        out = grouped.agg(time=("time", "last"), user=("user", "last"), run=("run", "last"))
        out["label"] = grouped["label"].agg(_last_present).astype("Int8")
        out["tag"] = grouped["tag"].agg(lambda s: _last_present(s.replace("", np.nan)) or "")
        out["times"] = grouped.size()
        return out.reset_index()[["object_id", "label", "tag", "time", "user", "run", "times"]]

    def labelled(self) -> tuple[np.ndarray, np.ndarray]:
        """(object ids, labels) of the objects whose latest label is 1 or 0."""
        latest = self.latest()
        known = latest[latest["label"].notna()]
        return known["object_id"].to_numpy(str), known["label"].to_numpy(np.int8)

    def version(self) -> int:
        import lance

        return lance.dataset(str(self.path)).version if self.exists() else 0


_EMPTY = {
    "object_id": "object",
    "label": "Int8",
    "tag": "object",
    "time": "datetime64[ms, UTC]",
    "user": "object",
    "run": "object",
}


def _last_present(values):
    present = values.dropna()
    return present.iloc[-1] if len(present) else None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): the label stands without one
        return ""


def read_csv_labels(path: str | Path):
    """A labels CSV (the map's "Download labels as CSV": object_id, label, tag) as a DataFrame."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"No labels file {path}: give the CSV the map's 'Download labels' button saved.")
    frame = pd.read_csv(path, dtype={"object_id": str, "tag": str}, keep_default_na=False)
    if "object_id" not in frame.columns or not ({"label", "tag"} & set(frame.columns)):
        raise DataError(
            f"{path} has columns {', '.join(frame.columns) or '(none)'}; a labels CSV has object_id and a "
            f"label (1/0) and/or tag column."
        )
    return frame
