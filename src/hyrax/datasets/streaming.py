"""Batches of a stream: the data provider of iterable datasets (``infer_stream``).

``StreamProvider(config, group)`` reads the one dataset of ``[data_request.<group>]`` (a
``torch.utils.data.IterableDataset`` subclass of ``HyraxDataset``, such as ``KafkaStreamDataset``) and
makes batches in the map-style provider's form, ``{"object_id": ids, <name>: {field: array}}``, so a
model's ``prepare_inputs`` reads a stream as it reads a catalog. A batch is handed out when it is full
(``data_loader.batch_size``) or when ``batch_flush_timeout`` seconds passed since its first sample (a
quiet stream is not held back). Fields are the request's ``fields`` (else every field of the samples);
``collate_<field>`` methods of the dataset are honoured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyrax.datasets.collate import collate_values
from hyrax.errors import ConfigError, DataError


@dataclass
class StreamBatch:
    """One batch, where its samples came from, and what could not be read since the last batch."""

    batch: dict[str, Any]
    positions: list[tuple[str, int, int]]
    alert_ids: list[str]
    timestamps_ms: list[int]
    skipped: list[tuple[str, int, int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions)


class StreamProvider:
    """The stream dataset of one ``[data_request]`` group, batched."""

    def __init__(self, config: Mapping, group: str):
        from torch.utils.data import IterableDataset

        from hyrax.datasets.provider import dataset_config
        from hyrax.plugins import DATASETS

        requests = config.get("data_request", {})
        request = requests.get(group)
        verb = "train_stream" if group == "train_stream" else "infer_stream"
        if not request:
            raise ConfigError(
                f"{verb} reads [data_request.{group}]: give it one stream dataset, for example\n"
                f'[data_request.{group}.alerts]\ndataset_class = "KafkaStreamDataset"\nfields = ["image"]'
            )
        if len(request) != 1:
            raise ConfigError(
                f"[data_request.{group}] has {len(request)} datasets ({', '.join(request)}); a stream is read alone: "
                f"keep the one stream dataset."
            )
        ((self.name, spec),) = request.items()
        cls = DATASETS.get(spec["dataset_class"])
        if not (isinstance(cls, type) and issubclass(cls, IterableDataset)):
            raise ConfigError(
                f"[data_request.{group}.{self.name}] dataset_class = {spec['dataset_class']!r} is not a stream (a "
                f"torch IterableDataset); {verb} reads KafkaStreamDataset or your own IterableDataset. Use "
                f"`hyrax {verb.split('_')[0]}` for catalogs."
            )
        self.group = group
        self.dataset = cls(
            dataset_config(config, spec["dataset_class"], spec.get("dataset_config")),
            spec.get("data_location"),
        )
        self.fields = list(spec.get("fields") or []) or None
        self.id_field = str(spec.get("primary_id_field") or "object_id")
        if spec.get("primary_id_field") and hasattr(self.dataset, "primary_id_field"):
            self.dataset.primary_id_field = self.id_field  # a message stream names its ids by it
        self.batch_size = int(config["data_loader"]["batch_size"])
        self.flush_timeout = float(getattr(self.dataset, "batch_flush_timeout", 5.0))
        self.poll_timeout = float(getattr(self.dataset, "poll_timeout", 1.0))

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """The samples as one batch in the provider's form."""
        key = self.id_field if self.id_field in samples[0] else "object_id"
        object_ids = [str(s[key]) for s in samples]
        names = self.fields or sorted(
            k for k in samples[0] if not k.startswith("_") and k not in ("object_id", key)
        )
        fields: dict[str, Any] = {}
        for name in names:
            custom = getattr(self.dataset, f"collate_{name}", None)
            if callable(custom):
                fields.update(custom(samples))
                continue
            try:
                fields[name] = collate_values([s.get(name) for s in samples], name, object_ids)
            except KeyError:
                raise DataError(f"{type(self.dataset).__name__}: a sample has no field '{name}'.") from None
        return {"object_id": np.asarray(object_ids), self.name: fields}

    def first_batch(self) -> dict[str, Any]:
        """A batch of the first sample (kept in the stream), to size the model."""
        if callable(getattr(self.dataset, "frame_batches", None)):  # a table stream (LSDBStreamDataset)
            return self._frame_batch(self.dataset.peek_frame(1)).batch
        peek = getattr(self.dataset, "peek", None)
        sample = peek() if callable(peek) else next(iter(self.dataset))
        self._check(sample)
        return self.collate([sample])

    def _check(self, sample: dict[str, Any]) -> None:
        missing = [f for f in (self.fields or []) if f not in sample]
        if missing:
            known = sorted(k for k in sample if not k.startswith("_"))
            raise ConfigError(
                f"[data_request.{self.group}.{self.name}] asks for field(s) {', '.join(missing)}, which the stream's "
                f"samples do not have. They have: {', '.join(known)}."
            )

    def batches(self, stop: threading.Event) -> Iterator[StreamBatch]:
        """Batches until ``stop`` is set; a partial batch after ``batch_flush_timeout`` seconds; an empty
        one (no samples) after each quiet ``poll_timeout``, so the caller can look around."""
        dataset = self.dataset
        if callable(getattr(dataset, "frame_batches", None)):
            yield from self._frame_batches(stop)
            return
        polling = callable(getattr(dataset, "poll", None)) and callable(getattr(dataset, "decode", None))
        source = None if polling else iter(dataset)
        batched = polling and callable(getattr(dataset, "decode_batch", None))  # normalises a batch at once
        samples: list[dict[str, Any]] = []
        skipped: list[tuple[str, int, int, str]] = []
        started = None
        while not stop.is_set():
            if polling:
                wait = (
                    self.poll_timeout
                    if started is None
                    else max(0.0, started + self.flush_timeout - time.monotonic())
                )
                messages = dataset.poll(
                    self.batch_size - len(samples), max(0.01, min(wait, self.poll_timeout))
                )
                if batched:
                    decoded, unreadable = dataset.decode_batch(messages)
                    samples.extend(decoded)
                    skipped.extend(unreadable)
                else:
                    for message in messages:
                        try:
                            samples.append(dataset.decode(message))
                        except DataError as error:
                            skipped.append(
                                (message.topic(), message.partition(), message.offset(), str(error))
                            )
            else:
                try:
                    samples.append(next(source))
                except StopIteration:
                    stop.set()
            if (samples or skipped) and started is None:
                started = time.monotonic()
            due = started is not None and time.monotonic() - started >= self.flush_timeout
            if (
                len(samples) >= self.batch_size
                or due
                or (stop.is_set() and (samples or skipped))
                or (skipped and not samples)
            ):
                yield self._batch(samples, skipped)
                samples, skipped, started = [], [], None
            elif not samples and not skipped:
                yield StreamBatch({}, [], [], [])  # quiet: nothing arrived

    def _batch(self, samples: list[dict[str, Any]], skipped: list) -> StreamBatch:
        positions = [tuple(s.get("_position", ("", 0, -1))) for s in samples]
        return StreamBatch(
            self.collate(samples) if samples else {},
            positions,
            [str(s.get("alert_id", s["object_id"])) for s in samples],
            [int(s.get("_timestamp_ms", -1)) for s in samples],
            list(skipped),
        )

    def _frame_batches(self, stop: threading.Event) -> Iterator[StreamBatch]:
        """A table stream's batches (DataFrames of ``batch_size`` rows, made by the dataset), columns
        to arrays without a Python object per row; until the stream ends or ``stop`` is set."""
        frames = self.dataset.frame_batches()
        try:
            for frame in frames:
                yield self._frame_batch(frame)
                if stop.is_set():
                    break
        finally:
            frames.close()  # rows read and not handed out stay with the dataset
        stop.set()

    def _frame_batch(self, frame) -> StreamBatch:
        if self.id_field in frame.columns:
            ids = frame[self.id_field].to_numpy().astype(str)
        elif self.id_field == frame.index.name:
            # An LSDB catalog's rows are named by its spatial index (_healpix_29), which the published
            # notebooks use as the id of a catalog that has no id column of its own.
            ids = frame.index.to_numpy().astype(str)
        else:
            raise ConfigError(
                f"[data_request.{self.group}.{self.name}] primary_id_field = {self.id_field!r} is not a column of the "
                f"stream; its columns: {', '.join(map(str, frame.columns))}"
                + (f" (and its index, {frame.index.name})." if frame.index.name else ".")
            )
        names = self.fields or [n for n in self.dataset.fields() if n != self.id_field]
        columns = self.dataset.columns_of(frame, names)
        count = len(ids)
        return StreamBatch(
            {"object_id": ids, self.name: columns}, [("", 0, -1)] * count, list(ids), [-1] * count
        )
