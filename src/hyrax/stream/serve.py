"""``infer_stream``: a trained model serving an alert stream, each alert's result written exactly once.

Three stages joined by bounded queues (two batches each, so memory stays flat whatever the rate):

1. the main thread consumes and decodes (``StreamProvider.batches``), drops what this run already holds
   (by topic/partition/offset and by alert id), and commits offsets that the writer reported durable;
2. an inference thread runs ``prepare_inputs`` and the model;
3. a writer thread appends the batch's results, and the messages it could not read, to Lance tables in
   the run directory (``stream_results.lance``, ``stream_skipped.lance``; one commit each), then reports
   the batch's offsets as durable.

Offsets are committed only after the results are durable, and in the order batches were consumed, so a
``kill -9`` at any moment loses nothing: the restarted run (``--resume RUN_DIR``) is handed again what was
not committed, and what it already wrote is recognised (offsets at or below the high-water mark of their
partition in the tables, or alert ids already there) and acknowledged without a second row. A producer
that sent the same alert twice gets one row too (alert ids are remembered as 8-byte hashes: 80 MB for
10M alerts).

``stream_results.lance`` columns: ``alert_id``, ``object_id``, ``topic``, ``partition``, ``offset``,
``produced_ms`` (the message's timestamp), ``written_ms``, ``vector`` (the model's output, flattened;
its shape is in the schema's metadata). An ``infer_batch`` that returns a dict gets one column per key
instead of ``vector`` (each key's shape and dtype in the metadata as Hyrax 0.13 writes them). Read it
while the stream runs with ``lance.dataset(path).to_table().to_pandas()`` or :func:`read_results`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.compute import threads
from hyrax.errors import ResultsError
from hyrax.faults import fault_point

logger = logging.getLogger(__name__)

RESULTS = "stream_results.lance"
SKIPPED = "stream_skipped.lance"
INPUTS = "stream_inputs.toml"
SAMPLE = "stream_first_sample.npz"  # the alert that sized the model
_COMPACT_EVERY = 256  # appends between compactions of the tables' small fragments
#: The columns of stream_results.lance besides the model's output: a dict output may not use these keys.
STREAM_COLUMNS = (
    "alert_id",
    "object_id",
    "topic",
    "partition",
    "offset",
    "produced_ms",
    "written_ms",
    "vector",
)


@dataclass
class StreamSummary:
    """What a run of infer_stream did (this session of it)."""

    alerts: int = 0
    skipped: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    run_dir: Path | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.alerts / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        text = (
            f"{self.alerts:,} alerts inferred in {self.seconds:.1f} s ({self.rate:,.0f}/s), {self.skipped:,} skipped, "
            f"{self.duplicates:,} already there; stopped by {self.stopped_by}"
        )
        if self.reasons:
            text += "\nskipped: " + "; ".join(f"{n} x {r}" for r, n in list(self.reasons.items())[:5])
        return text

    def to_pandas(self):
        return read_results(self.run_dir)


def read_results(run_dir: str | Path):
    """The results of a stream run so far, as a pandas DataFrame (one row per alert)."""
    import lance

    path = Path(run_dir) / RESULTS
    if not any((path / "_versions").glob("*.manifest")):  # the folder comes before the first commit
        raise ResultsError(
            f"{run_dir} holds no {RESULTS} yet: is it an infer_stream run that received alerts?"
        )
    return lance.dataset(str(path)).to_table().to_pandas()


def alert_hashes(alert_ids) -> np.ndarray:
    import pandas as pd

    return pd.util.hash_array(np.asarray(alert_ids, dtype=object)).astype(np.uint64)


class StreamStore:
    """The run's two tables, what they already hold, and appending to them."""

    def __init__(self, run_dir: Path):
        self.results, self.skipped = run_dir / RESULTS, run_dir / SKIPPED
        self.high_water: dict[tuple[str, int], int] = {}
        self._known = np.empty(0, dtype=np.uint64)  # sorted hashes of alert ids written
        self._recent: set[int] = set()
        self._appends = 0
        self.shape: tuple[int, ...] | None = None
        for path, with_ids in ((self.results, True), (self.skipped, False)):
            self._load(path, with_ids)

    def _load(self, path: Path, with_ids: bool) -> None:
        import lance

        if not path.exists():
            return
        dataset = lance.dataset(str(path))
        columns = ["topic", "partition", "offset"] + (["alert_id"] if with_ids else [])
        for batch in dataset.to_batches(columns=columns, batch_size=1 << 20):
            table = batch.to_pandas()
            for (topic, partition), offset in table.groupby(["topic", "partition"])["offset"].max().items():
                key = (str(topic), int(partition))
                self.high_water[key] = max(int(offset), self.high_water.get(key, -1))
            if with_ids:
                self._known = np.union1d(self._known, alert_hashes(table["alert_id"].to_numpy()))
        if with_ids and self.shape is None:
            shape = (dataset.schema.metadata or {}).get(b"tensor_shape")
            self.shape = tuple(int(v) for v in shape.decode().split(",")) if shape else None

    def new(self, positions: list[tuple[str, int, int]], alert_ids: list[str]) -> np.ndarray:
        """Which of these messages this run has not written (a message of two copies in one batch: once)."""
        fresh = np.array(  # a sample with no position (offset -1: a stream other than Kafka) goes by its id
            [
                offset < 0 or offset > self.high_water.get((topic, partition), -1)
                for topic, partition, offset in positions
            ],
            dtype=bool,
        )
        hashes = alert_hashes(alert_ids)
        seen_before = self._in_known(hashes) | np.array([int(h) in self._recent for h in hashes], dtype=bool)
        _, first = np.unique(hashes, return_index=True)
        once = np.zeros(len(hashes), dtype=bool)
        once[first] = True
        return fresh & ~seen_before & once

    def _in_known(self, hashes: np.ndarray) -> np.ndarray:
        """Which hashes are among the (sorted) known ones: a binary search each, O(log N) per alert (a
        np.isin here sorted every known hash for every batch, 40 ms a batch at a million alerts)."""
        if not len(self._known):
            return np.zeros(len(hashes), dtype=bool)
        found = np.minimum(np.searchsorted(self._known, hashes), len(self._known) - 1)
        return self._known[found] == hashes

    def append(self, rows: dict[str, Any] | None, skipped: list[tuple[str, int, int, str]]) -> None:
        """Write a batch's rows and skips, each one Lance commit; then they count as written."""
        import lance
        import pyarrow as pa

        if rows is not None and len(rows["alert_id"]):
            vectors = rows.pop("vector")
            named = vectors if isinstance(vectors, Mapping) else None  # a dict output: a column per key
            columns = {k: pa.array(v) for k, v in rows.items()}
            if named is None:
                shape = tuple(vectors.shape[1:])
                flat = vectors.reshape(len(vectors), -1).astype(np.float32)
                columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
                metadata = {"tensor_shape": ",".join(map(str, shape))}
            else:
                metadata = {}
                for key, values in named.items():
                    flat = np.ascontiguousarray(values).reshape(len(values), -1)
                    columns[key] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
                    metadata[key] = json.dumps(
                        {"tensor_shape": list(values.shape[1:]), "tensor_dtype": str(values.dtype)}
                    )
                shape = tuple(named.get("data", next(iter(named.values()))).shape[1:])
            table = pa.table(columns).replace_schema_metadata(metadata)
            self._write(lance, self.results, table)
            self.shape = shape
            for topic, partition, offset in zip(
                rows["topic"], rows["partition"], rows["offset"], strict=True
            ):
                key = (str(topic), int(partition))
                self.high_water[key] = max(int(offset), self.high_water.get(key, -1))
            self._recent.update(int(h) for h in alert_hashes(rows["alert_id"]))
            if len(self._recent) > 65536:
                self._known = np.union1d(self._known, np.fromiter(self._recent, dtype=np.uint64))
                self._recent.clear()
        if skipped:
            table = pa.table(
                {
                    "topic": pa.array([s[0] for s in skipped], pa.string()),
                    "partition": pa.array([s[1] for s in skipped], pa.int32()),
                    "offset": pa.array([s[2] for s in skipped], pa.int64()),
                    "reason": pa.array([s[3] for s in skipped], pa.string()),
                    "written_ms": pa.array([int(time.time() * 1000)] * len(skipped), pa.int64()),
                }
            )
            self._write(lance, self.skipped, table)
            for topic, partition, offset, _ in skipped:
                key = (topic, int(partition))
                self.high_water[key] = max(int(offset), self.high_water.get(key, -1))

    def _write(self, lance, path: Path, table) -> None:
        try:
            lance.write_dataset(table, str(path), mode="append" if path.exists() else "create")
        except OSError as error:
            raise ResultsError(f"Cannot write {path}: {error}. Free some space and resume the run.") from None
        self._appends += 1
        if self._appends % _COMPACT_EVERY == 0:
            lance.dataset(str(path)).optimize.compact_files()


@dataclass
class _Item:
    """A batch on its way through the stages."""

    stream: Any  # StreamBatch
    keep: np.ndarray
    positions: list[tuple[str, int, int]]  # every message of the batch: read, duplicate or skipped
    outputs: np.ndarray | None = None
    skipped: list = field(default_factory=list)


class StreamServer:
    """One session of infer_stream over an open run directory; :meth:`run` until stopped."""

    def __init__(
        self,
        config: Mapping,
        run_dir: Path,
        weights: Path,
        stop: threading.Event | None = None,
        sample_batch: Mapping | None = None,
    ):
        """``sample_batch``: a batch that sizes the model, for a session fed by hand (no stream configured)."""
        import torch

        from hyrax.datasets.streaming import StreamProvider
        from hyrax.models.model import load_prepare_inputs
        from hyrax.training.inference import TorchRunner
        from hyrax.training.loop import model_class

        group = "infer_stream" if "infer_stream" in config.get("data_request", {}) else "infer"
        by_hand = sample_batch is not None and group not in config.get("data_request", {})
        self.provider = None if by_hand else StreamProvider(config, group)
        self.stop = stop or threading.Event()
        self.store = StreamStore(run_dir)
        self.run_dir = run_dir
        cls = model_class(config)
        prepare = load_prepare_inputs(weights.parent) or cls.prepare_inputs
        try:
            first = dict(sample_batch) if by_hand else first_batch(self.provider, run_dir)
        except BaseException:
            close = getattr(getattr(self.provider, "dataset", None), "close", None)
            if callable(close):
                close()
            raise
        model = cls(config, data_sample=prepare(first))
        model.load(weights)
        model.eval()
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        model.to(device)
        self.runner = TorchRunner(model, prepare, device)
        self.stats_interval = 10.0
        self.model_threads = model_threads(config, device)

    def run(self, max_alerts: int | None = None, idle_timeout: float | None = None) -> StreamSummary:
        import torch

        before = torch.get_num_threads()
        if self.model_threads is not None and self.model_threads < before:
            torch.set_num_threads(self.model_threads)  # process-wide: put back when the run ends
        try:
            return self._run(max_alerts, idle_timeout)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def _run(self, max_alerts: int | None, idle_timeout: float | None) -> StreamSummary:
        summary = StreamSummary(run_dir=self.run_dir)
        to_infer: queue.Queue = queue.Queue(maxsize=2)
        to_write: queue.Queue = queue.Queue(maxsize=2)
        durable: queue.Queue = queue.Queue()
        failure: list[BaseException] = []
        workers = [
            threading.Thread(
                target=self._infer, args=(to_infer, to_write, failure), name="hyrax-infer", daemon=True
            ),
            threading.Thread(
                target=self._write,
                args=(to_write, durable, failure, summary),
                name="hyrax-write",
                daemon=True,
            ),
        ]
        for worker in workers:
            worker.start()
        started = last_report = last_alert = time.monotonic()
        reported = 0
        try:
            for stream in self.provider.batches(self.stop):
                self._commit(durable)
                if failure:
                    break
                now = time.monotonic()
                if len(stream) or stream.skipped:
                    last_alert = now
                    item = self.admit(stream, summary)
                    to_infer.put(item)
                    if max_alerts is not None and summary.alerts >= max_alerts:
                        summary.stopped_by = f"max_alerts = {max_alerts}"
                        self.stop.set()
                elif not getattr(self.provider.dataset, "assigned", lambda: True)():
                    last_alert = now  # idle only counts once partitions are ours
                    if now - last_report >= self.stats_interval:
                        logger.warning(
                            "infer_stream: no partitions assigned yet (the group %s rebalances, or another consumer "
                            "holds them)",
                            getattr(self.provider.dataset, "group_id", "?"),
                        )
                elif idle_timeout is not None and now - last_alert > idle_timeout:
                    summary.stopped_by = f"no alert for {idle_timeout:g} s (idle_timeout)"
                    self.stop.set()
                if now - last_report >= self.stats_interval:
                    rate = (summary.alerts - reported) / (now - last_report)
                    lag = getattr(self.provider.dataset, "lag", lambda: None)()
                    logger.info(
                        "infer_stream: %s alerts, %.0f alerts/s over the last %.0f s, consumer lag %s, %s skipped",
                        f"{summary.alerts:,}",
                        rate,
                        now - last_report,
                        "?" if lag is None else f"{lag:,}",
                        f"{summary.skipped:,}",
                    )
                    last_report, reported = now, summary.alerts
        except KeyboardInterrupt:
            summary.stopped_by = "Ctrl-C"
        finally:
            self.stop.set()
            to_infer.put(None)
            for worker in workers:
                worker.join()
            self._commit(durable)
            close = getattr(self.provider.dataset, "close", None)
            if callable(close):
                close()
        summary.seconds = time.monotonic() - started
        summary.stopped_by = summary.stopped_by or "a stop request (the stop event, SIGTERM or Ctrl-C)"
        if failure:
            raise failure[0]
        return summary

    def _commit(self, durable: queue.Queue) -> None:
        commit = getattr(self.provider.dataset, "commit", None)
        while True:
            try:
                positions = durable.get_nowait()
            except queue.Empty:
                return
            if callable(commit):
                commit(positions)
                fault_point("stream.offsets_committed")

    # -- one batch's way: admitted (what this run has not written), inferred, written --------------------
    def admit(self, stream, summary: StreamSummary) -> _Item:
        """A batch on its way, with the messages this run already wrote marked (not to be written again)."""
        keep = self.store.new(stream.positions, stream.alert_ids) if len(stream) else np.zeros(0, bool)
        summary.duplicates += int((~keep).sum())
        summary.alerts += int(keep.sum())
        positions = list(stream.positions) + [s[:3] for s in stream.skipped]
        return _Item(stream, keep, positions, skipped=list(stream.skipped))

    def infer(self, item: _Item) -> None:
        if item.keep.any():
            item.outputs = stream_outputs(self.runner(_select(item.stream.batch, item.keep)))

    def write(self, item: _Item, summary: StreamSummary) -> None:
        """Append the item's rows and skips (durable when this returns)."""
        rows = None
        if item.outputs is not None:
            rows, bad = _rows(item)
            item.skipped.extend(bad)
        self.store.append(rows, item.skipped)
        summary.skipped += len(item.skipped)
        for *_, reason in item.skipped:
            key = reason if len(summary.reasons) < 20 or reason in summary.reasons else "(other reasons)"
            summary.reasons[key] = summary.reasons.get(key, 0) + 1
        fault_point("stream.batch_written")  # durable, its offsets not yet handed to the commit

    def _infer(self, source: queue.Queue, target: queue.Queue, failure: list) -> None:
        try:
            while (item := source.get()) is not None:
                self.infer(item)
                target.put(item)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            failure.append(error)
            self.stop.set()
            _drain(source)
        finally:
            target.put(None)

    def _write(
        self, source: queue.Queue, durable: queue.Queue, failure: list, summary: StreamSummary
    ) -> None:
        try:
            while (item := source.get()) is not None:
                self.write(item, summary)
                durable.put(item.positions)
        except BaseException as error:  # noqa: BLE001
            failure.append(error)
            self.stop.set()
            _drain(source)


def model_threads(config: Mapping, device) -> int | None:
    """torch's threads for the model while a stream is served: on the CPU, ``general.threads`` (else the
    cores this process may use) less one, at least one, as the decoding thread keeps a core busy meanwhile;
    None (torch's own) on an accelerator. A drain of 3,000 alerts on 2 loaded cores: 245-275 alerts/s
    with 1 thread, 211-224 with torch's 2 (the model's threads spin while decoding waits for a core)."""
    return None if device.type != "cpu" else max(1, threads(config) - 1)


def first_batch(provider, run_dir: Path) -> dict[str, Any]:
    """The batch that sizes the model: the run's first sample, kept in the run directory, so that a
    resumed run with nothing new to read builds the same model at once."""
    from hyrax.results.run_dir import write_npz_atomic

    path = Path(run_dir) / SAMPLE
    if path.exists():
        with np.load(path, allow_pickle=False) as saved:
            batch: dict[str, Any] = {}
            for key in saved.files:
                *outer, name = key.split("/")
                (batch.setdefault(outer[0], {}) if outer else batch)[name] = saved[key]
            return batch
    dataset = provider.dataset
    topics = getattr(dataset, "topics", None)
    where = f"{', '.join(topics)} at {dataset.bootstrap_servers}" if topics else type(dataset).__name__
    logger.info("%s: waiting for the first sample of %s to size the model", provider.group, where)
    batch = provider.first_batch()
    flat = {"object_id": np.asarray(batch["object_id"], dtype=str)}
    for name, fields in batch.items():
        if isinstance(fields, dict):
            flat.update({f"{name}/{field}": np.asarray(value) for field, value in fields.items()})
    write_npz_atomic(path, **flat)
    return batch


def _drain(source: queue.Queue) -> None:
    while True:
        try:
            if source.get(timeout=0.1) is None:
                return
        except queue.Empty:
            return


def stream_outputs(outputs: Any) -> np.ndarray | dict[str, np.ndarray]:
    """The model's outputs for a batch: an array, or a dict of arrays (one results column per key, whose
    names must not be the stream table's own)."""
    if not isinstance(outputs, Mapping):
        return np.asarray(outputs)
    taken = sorted(set(outputs) & set(STREAM_COLUMNS))
    if taken:
        raise ResultsError(
            f"infer_batch returned a dict with the key(s) {', '.join(taken)}, which infer_stream's results "
            f"table keeps for the stream ({', '.join(STREAM_COLUMNS)}): name those outputs otherwise."
        )
    return {str(key): np.asarray(value) for key, value in outputs.items()}


def select_outputs(outputs: np.ndarray | Mapping[str, np.ndarray], rows) -> Any:
    """The outputs of some rows of a batch (an array, or each array of a dict)."""
    if isinstance(outputs, Mapping):
        return {key: values[rows] for key, values in outputs.items()}
    return outputs[rows]


def _select(batch: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    if keep.all():
        return batch
    return {k: (_select(v, keep) if isinstance(v, dict) else np.asarray(v)[keep]) for k, v in batch.items()}


def _rows(item: _Item) -> tuple[dict[str, Any], list[tuple[str, int, int, str]]]:
    """The rows of the alerts kept, and the alerts whose output is not finite (recorded as skipped)."""
    stream, keep, outputs = item.stream, item.keep, item.outputs
    index = np.flatnonzero(keep)
    arrays = list(outputs.values()) if isinstance(outputs, Mapping) else [outputs]
    finite = np.ones(len(index), dtype=bool)
    for values in arrays:
        if values.dtype.kind in "fc":
            finite &= np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    positions = [stream.positions[i] for i in index]
    bad = [(*positions[j], "the model's output is NaN or infinite") for j in np.flatnonzero(~finite)]
    chosen = index[finite]
    now = int(time.time() * 1000)
    rows = {
        "alert_id": np.asarray([stream.alert_ids[i] for i in chosen], dtype=object),
        "object_id": np.asarray(stream.batch["object_id"], dtype=object)[chosen],
        "topic": np.asarray([stream.positions[i][0] for i in chosen], dtype=object),
        "partition": np.asarray([stream.positions[i][1] for i in chosen], dtype=np.int32),
        "offset": np.asarray([stream.positions[i][2] for i in chosen], dtype=np.int64),
        "produced_ms": np.asarray([stream.timestamps_ms[i] for i in chosen], dtype=np.int64),
        "written_ms": np.full(len(chosen), now, dtype=np.int64),
        "vector": select_outputs(outputs, finite),  # a dict: a column per key
    }
    return rows, bad
