"""``KafkaStreamDataset``: alerts from Kafka topics, as an iterable dataset (no length).

Configured by ``[data_set.KafkaStreamDataset]`` (the published keys: ``bootstrap_servers``, ``topics``,
``group_id``, ``auto_offset_reset``, ``commit_after_batch``, ``poll_timeout``, ``batch_flush_timeout``,
``peek_timeout``, ``credentials_file``, ``consumer_options``; and ``schema_file``), or by a
``data_location`` of the form ``kafka://host:port/topic``. Each message is decoded by
:mod:`hyrax.stream.alerts` into a sample: ``image`` (the science, template and difference stamps, 3 x h x w),
``object_id``, ``alert_id`` and the alert's scalars (``diaSource.ra``, ``candidate.magpsf``...).

The iterable-dataset contract (any ``torch.utils.data.IterableDataset`` subclass of ``HyraxDataset``):
iterating yields one sample at a time, a dict ``{field: value}`` holding at least ``object_id``; a
sample that cannot be made is not yielded (a dataset may record why). Streams that can acknowledge
what was processed also have ``commit(positions)``. :class:`~hyrax.datasets.streaming.StreamProvider`
batches such samples for ``infer_stream`` as the data provider batches map-style ones.

Offsets are never committed automatically (``enable.auto.commit`` is forced off): ``infer_stream``
commits a batch's offsets only after its results are durable. Credentials (SASL username and password...)
come from ``credentials_file`` (a private TOML file of librdkafka settings) or the environment
(``KAFKA_SASL_USERNAME``/``KAFKA_SASL_PASSWORD``); they are never logged or written to a run directory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np
from torch.utils.data import IterableDataset

from hyrax.config import get_setting
from hyrax.datasets.alert_archive import AlertImages
from hyrax.datasets.dataset import HyraxDataset
from hyrax.errors import ConfigError, DataError, HyraxError

logger = logging.getLogger(__name__)

SECTION = "data_set.KafkaStreamDataset"
_FORCED = {"enable.auto.commit": False, "enable.auto.offset.store": False}


class _Cleaned(NamedTuple):
    """A sample's stamps cleaned and stacked, waiting to be normalised (with the rest of its batch)."""

    image: np.ndarray
    label: str


class BrokerError(HyraxError):
    """The broker cannot be reached, or a topic is missing."""


class KafkaStreamDataset(HyraxDataset, IterableDataset):
    """Alerts consumed from Kafka topics; fields ``image``, ``object_id``, ``alert_id`` and the alert's
    scalars. ``positions`` of yielded samples are (topic, partition, offset)."""

    # The data request's primary_id_field, set by the stream provider: the field that names each message
    # (before the alert ids Hyrax knows), as upstream's JSON example {"id": ...} needs.
    primary_id_field: str | None = None

    def __init__(self, config: Mapping, data_location: str | None = None):
        from hyrax.stream.alerts import AlertDecoder

        section = config["data_set"]["KafkaStreamDataset"]
        servers, topics = str(section["bootstrap_servers"]), section["topics"]
        if data_location:
            parts = urlsplit(str(data_location))
            if parts.scheme != "kafka" or not parts.netloc:
                raise ConfigError(
                    f"KafkaStreamDataset: data_location '{data_location}' is not kafka://host:port[/topic]."
                )
            servers = parts.netloc
            topics = [parts.path.strip("/")] if parts.path.strip("/") else topics
        if isinstance(topics, str):
            topics = [topics]
        if not topics:
            raise ConfigError(
                f'{SECTION}.topics is empty: list the Kafka topics to consume, such as topics = ["ztf-alerts"] '
                f'(or give data_location = "kafka://host:port/topic").'
            )
        self.bootstrap_servers, self.topics = servers, [str(t) for t in topics]
        self.group_id = str(section["group_id"])
        self.auto_offset_reset = str(section["auto_offset_reset"])
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigError(
                f'{SECTION}.auto_offset_reset must be "earliest" or "latest"; got {self.auto_offset_reset!r}.'
            )
        self.commit_after_batch = bool(section["commit_after_batch"])
        self.poll_timeout = float(section["poll_timeout"])
        self.batch_flush_timeout = float(section["batch_flush_timeout"])
        peek = get_setting(config, f"{SECTION}.peek_timeout")
        self.peek_timeout = None if peek is None else float(peek)
        self._credentials_file = get_setting(config, f"{SECTION}.credentials_file")
        self._options = dict(section.get("consumer_options") or {})
        self.decoder = AlertDecoder(get_setting(config, f"{SECTION}.schema_file"))
        # Stamps cleaned, cut or padded and normalised as the archives' are (AlertParquetDataset), so a
        # model trained on an archive sees the same images on the stream.
        self.stamps = AlertImages(config, type(self).__name__)
        self.image_pipeline = self.stamps.pipeline
        self._consumer = None
        self._pending: list = []  # messages read by peek, handed out first
        #: (topic, partition, offset, reason) of messages that could not be decoded since the last take
        self.skipped: list[tuple[str, int, int, str]] = []
        self._stop = threading.Event()  # set by stop() or close(), from any thread
        #: The librdkafka settings the consumer is made with (the published attribute): ours, then the
        #: credentials, then consumer_options. Edits made before the first read apply; the offset keys stay
        #: manual whatever it says (offsets are committed once results are written).
        self.consumer_config: dict[str, Any] = self._settings()
        super().__init__(config, None)

    def __len__(self):
        raise TypeError("KafkaStreamDataset is a stream: it has no length. Use hyrax infer_stream.")

    # -- the consumer --------------------------------------------------------------------------------
    def consumer_settings(self) -> dict[str, Any]:
        """librdkafka settings: :attr:`consumer_config` with the offsets kept manual."""
        return {**self.consumer_config, **_FORCED}

    def _settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "auto.offset.reset": self.auto_offset_reset,
            "fetch.wait.max.ms": 50,
            "socket.connection.setup.timeout.ms": 10000,
        }
        settings.update(load_credentials(self._credentials_file))
        settings.update({str(k): v for k, v in self._options.items()})
        settings.update(_FORCED)
        return settings

    def stop(self) -> None:
        """End iteration from any thread: the samples already read are yielded, then ``for`` ends. The
        consumer stays open (:meth:`close` releases it), as published."""
        self._stop.set()

    def connect(self):
        """The consumer, subscribed; a BrokerError when the broker is down or a topic is missing."""
        if self._consumer is not None:
            return self._consumer
        from confluent_kafka import Consumer, KafkaException

        errors: list[str] = []
        settings = self.consumer_settings()
        logger.debug(
            "Kafka consumer settings: %s",
            {
                k: v
                for k, v in settings.items()
                if not k.startswith(("sasl.", "ssl.")) and "password" not in k
            },
        )
        settings["error_cb"] = lambda error: errors.append(str(error))
        consumer = Consumer(settings)
        # as long as librdkafka itself gives a connection (socket.connection.setup.timeout.ms, 10 s here)
        wait = float(settings.get("socket.connection.setup.timeout.ms", 10000)) / 1000
        try:
            metadata = consumer.list_topics(timeout=wait)
        except KafkaException as error:
            consumer.close()
            raise BrokerError(
                f"Cannot reach the Kafka broker at {self.bootstrap_servers} ({error.args[0] if error.args else error}"
                f"{'; ' + errors[-1] if errors else ''}). Check {SECTION}.bootstrap_servers and that the broker "
                f"is running."
            ) from None
        missing = [t for t in self.topics if t not in metadata.topics or metadata.topics[t].error is not None]
        if missing:
            consumer.close()
            known = sorted(t for t in metadata.topics if not t.startswith("__"))
            raise BrokerError(
                f"The Kafka broker at {self.bootstrap_servers} has no topic {', '.join(map(repr, missing))}. Its "
                f"topics: {', '.join(known) or '(none)'}. Check {SECTION}.topics."
            )
        consumer.subscribe(self.topics)
        self._consumer = consumer
        return consumer

    def poll(self, count: int, timeout: float) -> list:
        """Up to ``count`` messages (those a peek read first), waiting at most ``timeout`` seconds."""
        if self._pending:
            taken, self._pending = self._pending[:count], self._pending[count:]
            return taken
        return self._fetch(count, timeout)

    def _fetch(self, count: int, timeout: float) -> list:
        """Up to ``count`` new messages from the broker."""
        from confluent_kafka import KafkaError

        consumer = self.connect()
        messages = []
        for message in consumer.consume(count, timeout):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                continue
            elif error.fatal() or error.code() in (
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError._ALL_BROKERS_DOWN,
            ):
                raise BrokerError(f"Kafka consumer error: {error.str()} (topics {', '.join(self.topics)})")
            else:
                logger.warning("Kafka consumer: %s", error.str())
        return messages

    def peek(self) -> dict[str, Any]:
        """The first decodable sample: sizes a model before the stream runs. Every message read on the way
        is kept and handed out again by :meth:`poll` (an unreadable one is then recorded as skipped)."""
        deadline = None if self.peek_timeout is None else time.monotonic() + self.peek_timeout
        while True:
            messages = self._fetch(1, self.poll_timeout)
            self._pending.extend(messages)
            for message in messages:
                try:
                    return self.decode(message)
                except DataError:
                    continue
            if deadline is not None and time.monotonic() > deadline:
                raise BrokerError(
                    f"No readable alert arrived on {', '.join(self.topics)} within {SECTION}.peek_timeout = "
                    f"{self.peek_timeout:g} s ({len(self._pending)} unreadable); the model is sized by the first "
                    f"one. Produce to the topic, or raise peek_timeout (false: wait for ever)."
                )

    def decode(self, message) -> dict[str, Any]:
        """A message as a sample; DataError with the reason for one that is not a readable alert."""
        sample = self._decode(message)
        if isinstance(sample.get("image"), _Cleaned):
            sample["image"] = self.image_pipeline.finish(sample["image"].image, sample["image"].label)
        return sample

    def decode_batch(
        self, messages: Sequence
    ) -> tuple[list[dict[str, Any]], list[tuple[str, int, int, str]]]:
        """The messages as samples (each as :meth:`decode` makes it), their images normalised together
        (one call for the batch, not one per alert); and (topic, partition, offset, reason) of those that
        are not readable alerts."""
        samples, skipped = [], []
        own = type(self).decode is KafkaStreamDataset.decode  # a subclass's decode is honoured, per message
        for message in messages:
            try:
                samples.append(self._decode(message) if own else self.decode(message))
            except DataError as error:
                skipped.append((message.topic(), message.partition(), message.offset(), str(error)))
        waiting = [s for s in samples if isinstance(s.get("image"), _Cleaned)]
        for shape in {s["image"].image.shape for s in waiting}:  # one stack per stamp size (a single one
            group = [s for s in waiting if s["image"].image.shape == shape]  # once crop_to is known)
            images = self.image_pipeline.finish(
                np.stack([s["image"].image for s in group]), group[0]["image"].label
            )
            for sample, image in zip(group, images, strict=True):
                sample["image"] = image
        return samples, skipped

    def _decode(self, message) -> dict[str, Any]:
        """A sample whose stamps are cleaned but not normalised (its image a _Cleaned)."""
        from hyrax.stream.alerts import AlertError

        try:
            named = (self.primary_id_field,) if self.primary_id_field else ()
            sample = self.decoder.decode(message.value(), named)
        except AlertError as error:
            raise DataError(str(error)) from None
        if "image" in sample or any("cutout" in key.lower() for key in sample):
            label = f"Alert {sample.get('alert_id')} (object {sample.get('object_id')})"
            cleaned = self.stamps.clean(sample, label)
            sample["image"] = (
                np.asarray(sample["image"], np.float32) if cleaned is None else _Cleaned(cleaned, label)
            )
        sample["_position"] = (message.topic(), message.partition(), message.offset())
        sample["_timestamp_ms"] = message.timestamp()[1]
        return sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self._stop.is_set():
            for message in self.poll(64, self.poll_timeout):
                try:
                    yield self.decode(message)
                except DataError as error:
                    self.skipped.append((message.topic(), message.partition(), message.offset(), str(error)))

    def commit(self, positions: Sequence[tuple[str, int, int]]) -> None:
        """Acknowledge every message up to these (topic, partition, offset): the next run starts after them."""
        if not self.commit_after_batch or not positions or self._consumer is None:
            return
        from confluent_kafka import TopicPartition

        last: dict[tuple[str, int], int] = {}
        for topic, partition, offset in positions:
            last[(topic, partition)] = max(offset, last.get((topic, partition), -1))
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False
        )

    def assigned(self) -> bool:
        """True once the group gave this consumer partitions (a killed consumer's membership holds them until
        consumer_options "session.timeout.ms" runs out)."""
        return self._consumer is not None and bool(self._consumer.assignment())

    def lag(self) -> int | None:
        """Messages on the assigned partitions not consumed yet (None when unknown)."""
        if self._consumer is None:
            return None
        total = 0
        try:
            for partition in self._consumer.assignment():
                _, high = self._consumer.get_watermark_offsets(partition, timeout=1, cached=True)
                position = self._consumer.position([partition])[0].offset
                if high >= 0 and position >= 0:
                    total += high - position
        except Exception:  # noqa: BLE001 - lag is a report, never a failure
            return None
        return total

    def close(self) -> None:
        """Stop iteration and leave the consumer group (idempotent)."""
        self._stop.set()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()


def load_credentials(path: str | None) -> dict[str, str]:
    """librdkafka settings from a private TOML file, else SASL username/password from the environment."""
    if path is not None:
        file = Path(str(path)).expanduser()
        try:
            with open(file, "rb") as handle:
                values = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{SECTION}.credentials_file = '{file}' does not exist.") from None
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(
                f"{SECTION}.credentials_file = '{file}' cannot be read as TOML ({type(error).__name__}; its text is "
                f'not shown). Write it as lines such as "sasl.username" = "...".'
            ) from None
        return {str(k): str(v) for k, v in values.items()}
    username, password = os.environ.get("KAFKA_SASL_USERNAME"), os.environ.get("KAFKA_SASL_PASSWORD")
    if username and password:
        return {
            "sasl.username": username,
            "sasl.password": password,
            "security.protocol": os.environ.get("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            "sasl.mechanism": os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        }
    return {}
