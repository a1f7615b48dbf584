"""Alert streams: h.infer_stream() on a local Kafka-protocol broker beside two bare consumer + model loops.

    python benchmarks/stream.py            # the whole table (~15-20 min on 2 shared cores)
    python benchmarks/stream.py --quick    # a short run of every case (~5 min)
    python benchmarks/stream.py --generated 1000000   # only the generator endurance case (no broker)

Clients (each case a fresh process; the same model, the same alerts, batches of up to 256):

* ``bare-serial``: confluent-kafka consume, decode (fastavro; the three FITS stamps with numpy), model,
  append the results, commit the offsets synchronously: one batch at a time.
* ``bare-pipelined``: what a competent engineer writes in a few dozen lines: a consume + decode thread, a
  model thread and a writer thread joined by bounded queues; offsets committed asynchronously, every 4
  durable batches (or 0.5 s), by the consuming thread.
* ``hyrax``: the public path, ``h.infer_stream()`` (every field of the alert decoded, stamps through the
  image path, results appended to Lance, offsets committed once the results are durable).
* ``hyrax-raw``: the same with ``data_set.normalize = "none"``: the model gets the stamps as they arrive,
  as the bare loops give them (by default each stamp is normalised, median and MAD then arcsinh, as the
  archives' images are for training).

Durable means the same for all three: a batch's results are in the filesystem (written and, for Lance,
committed to its manifest) before its offsets are committed, so ``kill -9`` loses nothing. None of them
fsyncs (Lance does not: checked with strace), so none is durable against a power cut. The bare clients
append fixed-size records (alert id, partition, offset, produced time, the model's 2 outputs) to one
binary file and flush it.

Cases:

* fixed rates: a producer process sends alerts at 500, 1,000, 2,000 and 4,000 alerts/s for ``--seconds``
  while a client serves (a fresh broker each time). Before the producer starts, one alert is served
  (imports, group join, model load, all untimed). The first ``--warmup`` seconds of production are the
  warm-up, excluded; over the rest: sustained throughput (results made durable per second), latency
  from production (the message timestamp) to the durable result, p50 and p99, of the alerts produced
  then; the backlog (sent - durable) at the start and end of that window. A client keeps up when its
  throughput is >= 95% of the rate achieved by the producer and its backlog did not grow by more than
  one second of alerts; otherwise it is reported behind, with the rate it sustained meanwhile. Alerts
  not durable when the client is stopped (``--grace`` s after production ends) count as slower than
  any measured latency (a percentile among them is printed as "> X").
* drain: ``--alerts`` alerts wait on a 2-partition topic (a backlog, as after a burst); timed from the
  client's start (model load, consumer group join and the first batch included; Python imports and
  Hyrax's config excluded) to the last durable result.
* endurance through the broker: ``--endurance`` alerts (sized so the in-memory broker holds at most
  ~``--broker-gb`` GB) produced onto a topic, then served by ``h.infer_stream()``; the Hyrax process's
  resident memory after every tenth.
* ``--generated N``: a separate case, labelled so: N alerts through ``h.infer_stream()`` with the broker
  replaced by a generator of the same packets (KafkaStreamDataset with only its broker calls replaced),
  for counts the in-memory broker cannot hold.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _harness import memory_mb, run_case

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SIZE = 63
BATCH = 256
CLIENTS = ("bare-serial", "bare-pipelined", "hyrax", "hyrax-raw")
FIRST_ID = 7_000_000  # alert n has diaSourceId FIRST_ID + n; its varint is 4 bytes up to n ~ 127M
RECORD = [
    ("alert_id", "<i8"),
    ("partition", "<i4"),
    ("offset", "<i8"),
    ("produced_ms", "<i8"),
    ("vector", "<f4", 2),
]


# --- alerts ---------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)  # Avro's zigzag
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Packets:
    """Rubin alerts in the Confluent wire format, stamps of 512 real galaxies, alert n with its own ids.
    Encoded once per galaxy; each alert is that packet with its diaSourceId bytes replaced (both places),
    so a producer makes thousands a second."""

    def __init__(self):
        import fastavro

        from tests.stream.alerts import SCHEMA_ID, alert_record, rubin_schema

        schema = fastavro.parse_schema(rubin_schema())
        self.parts = []
        for number in range(512):
            buffer = io.BytesIO()
            buffer.write(b"\x00" + struct.pack(">I", SCHEMA_ID))
            fastavro.schemaless_writer(buffer, schema, alert_record(number, SIZE))
            data, marker = buffer.getvalue(), _varint(FIRST_ID + number)
            pieces = data.split(marker)
            assert len(pieces) == 3, "the id occurs twice (diaSourceId, diaSource.diaSourceId)"
            self.parts.append(pieces)
        check = fastavro.schemaless_reader(io.BytesIO(self(1234)[5:]), schema, schema)
        assert check["diaSourceId"] == FIRST_ID + 1234 == check["diaSource"]["diaSourceId"]

    def __call__(self, number: int) -> bytes:
        return _varint(FIRST_ID + number).join(self.parts[number % 512])


def produce_all(bootstrap: str, topic: str, first: int, count: int) -> None:
    """Put alerts ``first`` .. ``first + count - 1`` on ``topic`` as fast as the broker takes them."""
    from confluent_kafka import Producer

    packets = Packets()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for number in range(first, first + count):
        while True:
            try:
                producer.produce(topic, packets(number))
                break
            except BufferError:
                producer.poll(0.1)
        if number % 1000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0, "messages left unsent"


def case_produce(bootstrap: str, topic: str, rate: float, seconds: float) -> dict:
    """Send alerts 1.. at ``rate``/s for ``seconds``; the sent count every 0.25 s (wall ms)."""
    from confluent_kafka import Producer

    packets = Packets()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, "queue.buffering.max.kbytes": 1 << 20}
    )
    total = int(rate * seconds)
    sent: list[tuple[float, int]] = []
    start = time.perf_counter()
    wall = time.time() * 1000
    for number in range(total):
        due = start + number / rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(due - now, 0.002))
        while True:
            try:
                producer.produce(topic, packets(number + 1))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        if not sent or now - start >= (len(sent)) * 0.25:
            sent.append((wall + (now - start) * 1000, number))
    producer.flush(60)
    end = time.perf_counter()
    sent.append((wall + (end - start) * 1000, total))
    return {"start_ms": wall, "end_ms": wall + (end - start) * 1000, "sent": sent, "count": total}


# --- the clients ----------------------------------------------------------------------------------------
# Each serves ``topic`` until ``stop`` is set, calling ``durable(produced_ms)`` once a batch's results are
# durable (before its offsets are committed).


def weights(directory: Path) -> Path:
    """A small CNN (HyraxCNN, 2 classes: real/bogus) for 3x63x63 stamps, seeded weights saved."""
    import numpy as np
    import torch

    from hyrax import Hyrax
    from hyrax.models.cnn import HyraxCNN

    torch.manual_seed(0)
    h = Hyrax(setup_logging=False)
    h.set_config("model.HyraxCNN.output_classes", 2)
    model = HyraxCNN(h.config, data_sample=np.zeros((1, 3, SIZE, SIZE), np.float32))
    path = directory / "stamp_cnn.pth"
    model.save(path)
    return path


def stream_hyrax(work, bootstrap, topic, weights_path, raw=False):
    """A Hyrax set up to serve the small CNN on ``topic`` (the public path a user takes); ``raw``: the
    stamps given to the model as they arrive (``data_set.normalize = "none"``), as the bare loops give them."""
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    if raw:
        h.set_config("data_set.normalize", "none")
    for key, value in {
        "general.results_dir": work,
        "model.name": "HyraxCNN",
        "model.HyraxCNN.output_classes": 2,
        "infer_stream.model_weights_file": str(weights_path),
        "data_loader.batch_size": BATCH,
        "data_set.KafkaStreamDataset.bootstrap_servers": bootstrap,
        "data_set.KafkaStreamDataset.topics": [topic],
        "data_set.KafkaStreamDataset.group_id": f"hyrax-{topic}",
        "data_set.KafkaStreamDataset.poll_timeout": 0.05,
        "data_set.KafkaStreamDataset.batch_flush_timeout": 0.1,
        "data_set.KafkaStreamDataset.consumer_options": {"session.timeout.ms": 6000},
    }.items():
        h.set_config(key, value)
    h.set_config(
        "data_request.infer_stream.alerts", {"dataset_class": "KafkaStreamDataset", "fields": ["image"]}
    )
    return h


def serve_hyrax(bootstrap, topic, weights_path, work, durable, stop, raw=False):
    """h.infer_stream(); ``durable`` is called after each Lance append (the benchmark wraps the append of
    StreamStore, Hyrax's own class, to see the moment)."""
    from hyrax.stream import serve

    original = serve.StreamStore.append

    def append(store, rows, skipped):
        produced = None if rows is None else rows["produced_ms"].copy()
        original(store, rows, skipped)
        if produced is not None and len(produced):
            durable(produced)

    serve.StreamStore.append = append
    summary = stream_hyrax(work, bootstrap, topic, weights_path, raw).infer_stream(stop=stop)
    table = summary.to_pandas()
    return {"unique": bool(not table.alert_id.duplicated().any()), "rows": len(table)}


def serve_hyrax_raw(bootstrap, topic, weights_path, work, durable, stop):
    """h.infer_stream() with ``data_set.normalize = "none"``: the bare loops' work (no robust
    normalisation of each stamp: about half of Hyrax's decoding per alert, 460 -> 241 us measured
    on 2,560 alerts with the machine busy)."""
    return serve_hyrax(bootstrap, topic, weights_path, work, durable, stop, raw=True)


class _Bare:
    """What both bare clients share: the consumer, the decoder, the model, the results file."""

    def __init__(self, bootstrap, topic, weights_path, work):
        import fastavro
        import numpy as np
        from confluent_kafka import Consumer

        from hyrax import Hyrax
        from hyrax.models.cnn import HyraxCNN
        from tests.stream.alerts import rubin_schema

        h = Hyrax(setup_logging=False)
        h.set_config("model.HyraxCNN.output_classes", 2)
        self.model = HyraxCNN(h.config, data_sample=np.zeros((1, 3, SIZE, SIZE), np.float32))
        self.model.load(Path(weights_path))
        self.model.eval()
        self.schema = fastavro.parse_schema(rubin_schema())
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bare-{topic}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
                "session.timeout.ms": 6000,
            }
        )
        self.consumer.subscribe([topic])
        self.results = open(Path(work) / "results.bin", "ab")  # noqa: SIM115 - closed by close()

    def decode(self, messages):
        """(images, records without the vector, {(topic, partition): next offset})."""
        import fastavro
        import numpy as np

        images = np.empty((len(messages), 3, SIZE, SIZE), np.float32)
        rows = np.zeros(len(messages), RECORD)
        offsets = {}
        for i, message in enumerate(messages):
            record = fastavro.schemaless_reader(io.BytesIO(message.value()[5:]), self.schema, self.schema)
            for band, key in enumerate(("cutoutScience", "cutoutTemplate", "cutoutDifference")):
                # a plain FITS image: 36 header cards = one 2880-byte block, then big-endian floats
                images[i, band] = np.frombuffer(record[key], ">f4", SIZE * SIZE, 2880).reshape(SIZE, SIZE)
            rows[i] = (
                record["diaSourceId"],
                message.partition(),
                message.offset(),
                message.timestamp()[1],
                0,
            )
            offsets[(message.topic(), message.partition())] = message.offset() + 1
        return images, rows, offsets

    def infer(self, images, rows):
        import torch

        with torch.inference_mode():
            rows["vector"] = self.model(torch.from_numpy(images)).numpy()
        return rows

    def write(self, rows):
        """Appended and flushed to the OS: durable against a killed process, as Lance's append is."""
        self.results.write(rows.tobytes())
        self.results.flush()

    def commit(self, offsets, asynchronous):
        from confluent_kafka import TopicPartition

        if offsets:
            positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            self.consumer.commit(offsets=positions, asynchronous=asynchronous)

    def close(self):
        self.consumer.close()
        self.results.close()


def serve_bare_serial(bootstrap, topic, weights_path, work, durable, stop):
    bare = _Bare(bootstrap, topic, weights_path, work)
    while not stop.is_set():
        messages = [m for m in bare.consumer.consume(BATCH, 0.1) if not m.error()]
        if messages:
            images, rows, offsets = bare.decode(messages)
            bare.write(bare.infer(images, rows))
            durable(rows["produced_ms"])
            bare.commit(offsets, asynchronous=False)
    bare.close()
    return {}


def serve_bare_pipelined(bootstrap, topic, weights_path, work, durable, stop):
    bare = _Bare(bootstrap, topic, weights_path, work)
    to_model, to_write, committable = queue.Queue(2), queue.Queue(2), queue.Queue()

    def model():
        while (item := to_model.get()) is not None:
            images, rows, offsets = item
            to_write.put((bare.infer(images, rows), offsets))
        to_write.put(None)

    def writer():
        while (item := to_write.get()) is not None:
            bare.write(item[0])
            durable(item[0]["produced_ms"])
            committable.put(item[1])

    threads = [threading.Thread(target=model), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    pending, batches, last_commit = {}, 0, time.monotonic()

    def commit_durable(force):  # the consumer is this thread's: commit from here, batched, asynchronously
        nonlocal batches, last_commit
        while not committable.empty():
            pending.update(committable.get())
            batches += 1
        if pending and (force or batches >= 4 or time.monotonic() - last_commit > 0.5):
            bare.commit(pending, asynchronous=not force)
            pending.clear()
            batches, last_commit = 0, time.monotonic()

    while not stop.is_set():
        messages = [m for m in bare.consumer.consume(BATCH, 0.1) if not m.error()]
        if messages:
            to_model.put(bare.decode(messages))
        commit_durable(False)
    to_model.put(None)
    for thread in threads:
        thread.join()
    commit_durable(True)
    bare.close()
    return {}


SERVE = {
    "bare-serial": serve_bare_serial,
    "bare-pipelined": serve_bare_pipelined,
    "hyrax": serve_hyrax,
    "hyrax-raw": serve_hyrax_raw,
}


class Durable:
    """The produce times and durable times of every result, gathered from the client's writer."""

    def __init__(self):
        self.produced: list = []
        self.written: list = []
        self.count = 0
        self.changed = threading.Condition()

    def __call__(self, produced_ms):
        import numpy as np

        now = time.time() * 1000
        with self.changed:
            self.produced.append(np.asarray(produced_ms, np.int64))
            self.written.append(np.full(len(produced_ms), now))
            self.count += len(produced_ms)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout)

    def arrays(self):
        import numpy as np

        return np.concatenate(self.produced), np.concatenate(self.written)


class Serving:
    """``with Serving(serve, ...) as out:`` the client serves in a thread until the block ends (also on an
    error, so a failed case exits instead of waiting on a client that never stops); ``out`` gets what it
    returns."""

    def __init__(self, serve, *args):
        self.stop, self.out, self.failure = threading.Event(), {}, []

        def run():
            try:
                self.out.update(serve(*args, self.stop))
            except BaseException as error:  # noqa: BLE001 - raised again by __exit__
                self.failure.append(error)

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> dict:
        self.thread.start()
        return self.out

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)
        if self.failure and not exc[0]:
            raise self.failure[0]


def _warm_imports():
    import confluent_kafka  # noqa: F401
    import fastavro  # noqa: F401
    import lance  # noqa: F401
    import torch  # noqa: F401

    import hyrax.stream.serve  # noqa: F401


# --- cases (each in a fresh process) --------------------------------------------------------------------


def case_drain(client, bootstrap, topic, weights_path, count) -> dict:
    _warm_imports()
    seen = Durable()
    with tempfile.TemporaryDirectory() as work:
        started = time.time() * 1000
        with Serving(SERVE[client], bootstrap, topic, weights_path, work, seen) as out:
            finished = seen.wait_for(count, 900)
    produced, written = seen.arrays()
    first_batch = written.min()
    return {
        "finished": finished,
        "alerts": len(written),
        "seconds": (written.max() - started) / 1000,
        "after_first": int((written > first_batch).sum()) / max((written.max() - first_batch) / 1000, 1e-9),
        "first_batch_s": (first_batch - started) / 1000,
        "rss": memory_mb()[1],
        **out,
    }


def case_rate(client, bootstrap, topic, weights_path, rate, seconds, warmup, grace) -> dict:
    import numpy as np

    _warm_imports()
    seen = Durable()
    with (
        tempfile.TemporaryDirectory() as work,
        Serving(SERVE[client], bootstrap, topic, weights_path, work, seen) as out,
    ):
        produce_all(bootstrap, topic, 0, 1)  # alert 0: group join and model load, before the clock
        if not seen.wait_for(1, 300):
            raise SystemExit(f"{client}: the warm-up alert was not served in 300 s")
        producer = subprocess.run(
            [sys.executable, __file__, "--case", "produce", bootstrap, topic, str(rate), str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        )
        sent = json.loads(producer.stdout.strip().splitlines()[-1])
        seen.wait_for(sent["count"] + 1, grace)
        stopped_ms = time.time() * 1000
    produced, written = seen.arrays()
    produced, written = produced[1:], written[1:]  # alert 0 was the warm-up
    begin, end = sent["start_ms"] + warmup * 1000, sent["end_ms"]
    times, counts = np.array([s[0] for s in sent["sent"]]), np.array([s[1] for s in sent["sent"]])

    def backlog(at):
        return int(np.interp(at, times, counts) - (written <= at).sum())

    window = (end - begin) / 1000
    in_window = (produced >= begin) & (produced <= end)
    waits = np.sort(written[in_window] - produced[in_window])
    missing = int(np.interp(end, times, counts) - np.interp(begin, times, counts)) - len(waits)
    waits = np.concatenate([waits, np.full(max(missing, 0), np.inf)])
    throughput = int(((written >= begin) & (written <= end)).sum()) / window
    achieved = (np.interp(end, times, counts) - np.interp(begin, times, counts)) / window
    start_backlog, end_backlog = backlog(begin), backlog(end)
    keeps_up = throughput >= 0.95 * achieved and end_backlog - start_backlog <= achieved

    def percentile(q):
        value = waits[min(int(np.ceil(q / 100 * len(waits))) - 1, len(waits) - 1)]
        return None if np.isinf(value) else float(value)

    return {
        "rate": rate,
        "achieved": achieved,
        "throughput": throughput,
        "keeps_up": bool(keeps_up),
        "p50": percentile(50),
        "p99": percentile(99),
        "censored_after_ms": stopped_ms - end,
        "backlog": [start_backlog, end_backlog],
        "not_durable": int(np.isinf(waits).sum()),
        "window_s": window,
        "rss": memory_mb()[1],
        **out,
    }


def case_endurance(bootstrap, topic, weights_path, count) -> dict:
    _warm_imports()
    rss: list = []
    seen = Durable()

    def tenths(produced_ms):
        before = seen.count
        seen(produced_ms)
        for k in range(before * 10 // count + 1, seen.count * 10 // count + 1):
            rss.append((k * count // 10, memory_mb()[0]))

    with tempfile.TemporaryDirectory() as work:
        started = time.time() * 1000
        with Serving(serve_hyrax, bootstrap, topic, weights_path, work, tenths) as out:
            finished = seen.wait_for(count, 3600)
    _, written = seen.arrays()
    return {
        "finished": finished,
        "alerts": len(written),
        "seconds": (written.max() - started) / 1000,
        "rss": rss,
        "peak": memory_mb()[1],
        **out,
    }


def _rss_of(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- the generator endurance case (no broker) -----------------------------------------------------


class _Message:
    """What confluent-kafka's Message offers the dataset: value, topic, partition, offset, timestamp."""

    __slots__ = ("_value", "_offset", "_time")

    def __init__(self, value: bytes, offset: int):
        self._value, self._offset, self._time = value, offset, int(time.time() * 1000)

    def value(self):
        return self._value

    def topic(self):
        return "generated"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def timestamp(self):
        return (1, self._time)


def generated_alerts_class(total: int, rss: list):
    """KafkaStreamDataset whose broker calls hand out ``total`` generated Rubin alerts, then nothing."""
    import io
    import struct

    import fastavro

    from hyrax.datasets.kafka import KafkaStreamDataset
    from tests.stream.alerts import SCHEMA_ID, alert_record, rubin_schema

    template = [alert_record(n, SIZE) for n in range(512)]
    schema = fastavro.parse_schema(rubin_schema())

    class GeneratedAlerts(KafkaStreamDataset):
        handed = 0
        committed = -1

        def connect(self):
            return self

        def _fetch(self, count, timeout):
            out = []
            for number in range(type(self).handed, min(total, type(self).handed + count)):
                record = dict(template[number % 512])
                record["diaSourceId"] = 7_000_000 + number
                record["diaSource"] = {**record["diaSource"], "diaSourceId": 7_000_000 + number}
                buffer = io.BytesIO()
                buffer.write(b"\x00" + struct.pack(">I", SCHEMA_ID))
                fastavro.schemaless_writer(buffer, schema, record)
                out.append(_Message(buffer.getvalue(), number))
                if (number + 1) % (total // 10) == 0:
                    rss.append((number + 1, memory_mb()[0]))
            type(self).handed += len(out)
            if not out:
                time.sleep(timeout)
            return out

        def commit(self, positions):
            if positions:
                type(self).committed = max(type(self).committed, max(o for _, _, o in positions))

        def assigned(self):
            return True

        def lag(self):
            return total - type(self).handed

        def close(self):
            pass

    return GeneratedAlerts


def case_generated(weights_path: str, count: int) -> dict:
    rss: list = []
    cls = generated_alerts_class(count, rss)
    with tempfile.TemporaryDirectory() as work:
        h = stream_hyrax(work, "127.0.0.1:9", "generated", weights_path)
        h.set_config("data_request.infer_stream.alerts", {"dataset_class": cls.__name__, "fields": ["image"]})
        started = time.perf_counter()
        summary = h.infer_stream(idle_timeout=3)
        seconds = time.perf_counter() - started
        table = summary.to_pandas()
        return {
            "alerts": len(table),
            "unique": bool(not table.alert_id.duplicated().any()),
            "committed": cls.committed + 1,
            "seconds": seconds,
            "rss": rss,
            "peak": memory_mb()[1],
        }


# --- the run --------------------------------------------------------------------------------------------


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def rate_table(rows: dict, grace: float) -> None:
    print(
        "\nFixed production rates (a fresh broker each run; the warm-up excluded): results made durable per "
        "second, latency production -> durable result\n"
    )
    print(
        f"{'rate/s':>7} {'sent/s':>7} {'client':<15} {'results/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'backlog start->end':>19} {'':<6} {'peak RSS':>8}"
    )
    for (rate, client), row in rows.items():
        # an alert not durable when the client stopped waited at least from the end of production
        bound = f">{row['censored_after_ms'] / 1000:.0f}s"
        p50 = _ms(row["p50"]) if row["p50"] is not None else bound
        p99 = _ms(row["p99"]) if row["p99"] is not None else bound
        state = "keeps up" if row["keeps_up"] else "BEHIND"
        start, end = row["backlog"]
        print(
            f"{rate:>7,.0f} {row['achieved']:>7,.0f} {client:<15} {row['throughput']:>9,.0f} {p50:>8} {p99:>8} "
            f"{start:>9,} -> {end:>6,} {state:<8} {row['rss']:>5,.0f} MB"
        )
    print(f"(a percentile '> X' lies among alerts not durable {grace:g} s after production ended)")
    for client in CLIENTS:
        kept = [rate for (rate, c), row in rows.items() if c == client and row["keeps_up"]]
        behind = [row["throughput"] for (rate, c), row in rows.items() if c == client and not row["keeps_up"]]
        print(
            f"  {client}: "
            + (f"keeps up to {max(kept):,.0f} alerts/s" if kept else "keeps up at none of these rates")
            + (f"; behind, it sustained {max(behind):,.0f}/s" if behind else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs of every case (~5 min)")
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--seconds", type=float, default=20, help="production time at each rate")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of production excluded at each rate")
    parser.add_argument(
        "--grace", type=float, default=5, help="seconds after production before a client stops"
    )
    parser.add_argument("--alerts", type=int, default=20000, help="the drain backlog")
    parser.add_argument("--endurance", type=int, default=120000, help="alerts through the broker (at most)")
    parser.add_argument("--broker-gb", type=float, default=8.0, help="the broker's memory cap for endurance")
    parser.add_argument("--generated", type=int, metavar="N", help="only the generator endurance case")
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *rest = args.case
        function = {
            "produce": case_produce,
            "drain": case_drain,
            "rate": case_rate,
            "endurance": case_endurance,
            "generated": case_generated,
        }[name]
        rest = [
            float(v) if v.replace(".", "").isdigit() and "." in v else int(v) if v.isdigit() else v
            for v in rest
        ]
        print(json.dumps(function(*rest)))
        return
    if args.quick:
        args.rates, args.seconds, args.warmup, args.grace = [1000, 4000], 6, 2, 3
        args.alerts, args.endurance = 2000, 5000
    from tests.stream.broker import Broker

    print(f"load average (1, 5, 15 min) at start: {os.getloadavg()}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as work:
        weights_path = weights(Path(work))
        if args.generated:
            row = run_case(__file__, "generated", weights_path, args.generated)
            print(
                f"\nGENERATOR, no broker: {row['alerts']:,} Rubin alerts through h.infer_stream(), "
                f"{row['alerts'] / row['seconds']:,.0f} alerts/s; every alert once: {row['unique']}"
            )
            for done, mb in row["rss"]:
                print(f"{done:>10,} {mb:>6.0f} MB")
            print(f"{'peak':>10} {row['peak']:>6.0f} MB")
            return
        rates = {}
        for rate in args.rates:
            for client in CLIENTS:
                with Broker() as broker:
                    broker.create_topic("alerts", 2)
                    rates[(rate, client)] = run_case(
                        __file__,
                        "rate",
                        client,
                        broker.bootstrap,
                        "alerts",
                        weights_path,
                        float(rate),
                        float(args.seconds),
                        float(args.warmup),
                        float(args.grace),
                    )
                print(
                    f"  rate {rate:g}/s {client}: {rates[(rate, client)]['throughput']:,.0f} results/s",
                    flush=True,
                )
        drains = {}
        with Broker() as broker:
            for client in CLIENTS:
                broker.create_topic(client, 2)
                produce_all(broker.bootstrap, client, 0, args.alerts)
            for client in CLIENTS:
                drains[client] = run_case(
                    __file__, "drain", client, broker.bootstrap, client, weights_path, args.alerts
                )
        per_alert = len(Packets()(0))
        count = min(args.endurance, int(args.broker_gb * 1e9 / per_alert / 1.1))
        with Broker() as broker:
            broker.create_topic("endurance", 2)
            started = time.perf_counter()
            produce_all(broker.bootstrap, "endurance", 0, count)
            produce_seconds = time.perf_counter() - started
            broker_mb = _rss_of(broker.process.pid)
            endurance = run_case(__file__, "endurance", broker.bootstrap, "endurance", weights_path, count)
    load = os.getloadavg()

    print(
        f"\nRubin alerts (schema 11.1, three 63x63 FITS stamps each, {per_alert / 1000:.0f} KB) on a 2-partition "
        f"topic of a local Kafka-protocol broker (Tansu, in memory); HyraxCNN (2 classes) on 3x63x63, batch "
        f"{BATCH}, CPU; producer, broker and client share the machine's {os.cpu_count()} cores"
    )
    rate_table(rates, args.grace)
    print(
        f"\nDrain of a {args.alerts:,}-alert backlog, timed from the client's start (model load, group join "
        f"and first batch included; imports excluded)\n"
    )
    print(f"{'client':<15} {'alerts/s':>9} {'after 1st batch':>16} {'1st batch s':>12} {'peak RSS':>9}")
    for client, row in drains.items():
        print(
            f"{client:<15} {row['alerts'] / row['seconds']:>9,.0f} {row['after_first']:>16,.0f} "
            f"{row['first_batch_s']:>12.1f} {row['rss']:>6,.0f} MB"
        )
    print(
        f"\nEndurance through the broker: {endurance['alerts']:,} alerts (broker resident {broker_mb:,.0f} MB "
        f"after producing them in {produce_seconds:.0f} s) through h.infer_stream(): "
        f"{endurance['alerts'] / endurance['seconds']:,.0f} alerts/s from the start; every alert once: "
        f"{endurance.get('unique')} ({endurance.get('rows', 0):,} rows)"
    )
    print(f"{'alerts':>10} {'resident':>9}")
    for done, mb in endurance["rss"]:
        print(f"{done:>10,} {mb:>6.0f} MB")
    print(f"{'peak':>10} {endurance['peak']:>6.0f} MB")
    print(f"\nload average (1, 5, 15 min) at end: {load}")


if __name__ == "__main__":
    main()
