"""Alert streams: h.infer_stream() on a local Kafka-protocol broker against a bare consumer + model loop.

    python benchmarks/stream.py                    # 20,000 alerts, small CNN on 3x63x63 stamps (~4 min)
    python benchmarks/stream.py --alerts 5000 --repeats 1
    python benchmarks/stream.py --endurance 1000000   # resident memory over a million alerts (~15 min)

Cases (each a fresh process, the same model, the same alerts, the same batch size):

* throughput: the alerts wait on a topic of 2 partitions (a backlog, as after a 30-second visit's burst);
  the rate is alerts / seconds from the first to the last result. ``bare`` consumes with the same
  confluent-kafka settings, decodes each Avro alert with fastavro and its three FITS stamps with
  numpy, runs the model and commits each batch: no Hyrax, no results written. ``hyrax`` is the public
  path, ``h.infer_stream()`` (decoding every field of the alert, results appended to Lance, offsets
  committed once durable). Neither times its first batch (imports, group join, model load).
* latency: alerts produced at a steady rate below the capacity while ``h.infer_stream()`` runs;
  latency = the time a result was written minus the time its alert was produced (the message
  timestamp), p50 and p99.
* memory: the Hyrax process's resident memory after each quarter of the alerts (flat = streaming), and
  each case's peak (VmHWM, its own: not inherited from the benchmark process).

The broker (Tansu, tests/stream/broker.py) keeps messages in memory, so the alerts of a run are bounded
by this machine's RAM (20,000 alerts of ~58 KB: 1.2 GB in the broker; a million would be 58 GB).

* endurance (``--endurance N``): N alerts through ``h.infer_stream()`` in one process, the broker replaced by
  a generator of the same Rubin packets (``GeneratedAlerts``: KafkaStreamDataset with only its broker calls
  replaced, so decoding, batching, the model, the Lance tables, the alert-id deduplication and the
  commits are Hyrax's own); resident memory after every tenth of the alerts. What it leaves out is
  librdkafka's own buffer, which its settings bound (queued.max.messages.kbytes, 64 MB by default) and
  which the broker cases above measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from _harness import alternating, best_of, memory_mb, run_case

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SIZE = 63
BATCH = 256


def packets(count: int) -> list[bytes]:
    """``count`` Rubin alerts in the Confluent wire format, each its own ids, stamps of 512 real galaxies."""
    import io
    import struct

    import fastavro

    from tests.stream.alerts import SCHEMA_ID, alert_record, rubin_schema

    out = []
    template = [alert_record(n, SIZE) for n in range(512)]
    for number in range(count):
        record = dict(template[number % 512])
        record["diaSourceId"] = 7_000_000 + number
        record["diaSource"] = {**record["diaSource"], "diaSourceId": 7_000_000 + number}
        buffer = io.BytesIO()
        buffer.write(b"\x00" + struct.pack(">I", SCHEMA_ID))
        fastavro.schemaless_writer(buffer, rubin_schema(), record)
        out.append(buffer.getvalue())
    return out


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


def stream_hyrax(
    work: str, bootstrap: str, topic: str, weights_path: str, group: str, poll: float, flush: float
):
    """A Hyrax set up to serve the small CNN on ``topic`` (the public path a user takes)."""
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    for key, value in {
        "general.results_dir": work,
        "model.name": "HyraxCNN",
        "model.HyraxCNN.output_classes": 2,
        "infer_stream.model_weights_file": weights_path,
        "data_loader.batch_size": BATCH,
        "data_set.KafkaStreamDataset.bootstrap_servers": bootstrap,
        "data_set.KafkaStreamDataset.topics": [topic],
        "data_set.KafkaStreamDataset.group_id": group,
        "data_set.KafkaStreamDataset.poll_timeout": poll,
        "data_set.KafkaStreamDataset.batch_flush_timeout": flush,
        "data_set.KafkaStreamDataset.consumer_options": {"session.timeout.ms": 6000},
    }.items():
        h.set_config(key, value)
    h.set_config(
        "data_request.infer_stream.alerts", {"dataset_class": "KafkaStreamDataset", "fields": ["image"]}
    )
    return h


def case_hyrax(bootstrap: str, topic: str, weights_path: str, count: int) -> dict:
    import lance

    from hyrax.stream.serve import RESULTS

    rss: list[float] = []
    with tempfile.TemporaryDirectory() as work:
        h = stream_hyrax(work, bootstrap, topic, weights_path, f"bench-{topic}", poll=0.2, flush=0.2)
        stop = threading.Event()

        def watch():  # peak RSS after each quarter of the alerts
            while not stop.wait(0.5):
                runs = list(Path(work).glob("*-infer_stream-*"))
                if runs and (runs[0] / RESULTS).exists():
                    done = lance.dataset(str(runs[0] / RESULTS)).count_rows()
                    while len(rss) < 4 and done >= (len(rss) + 1) * count // 4:
                        rss.append(memory_mb()[0])

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        summary = h.infer_stream(idle_timeout=2)
        stop.set()
        table = summary.to_pandas()
        # untimed, as the bare loop's warm-up: everything up to the first batch written (imports, group join,
        # model); then the alerts written after it, over the time to the last write
        first, last = table.written_ms.min(), table.written_ms.max()
        return {
            "alerts": int((table.written_ms > first).sum()),
            "seconds": (last - first) / 1000,
            "rss": memory_mb()[1],
            "rss_quarters": rss,
            "unique": bool(not table.alert_id.duplicated().any()) and len(table) == count,
        }


def case_bare(bootstrap: str, topic: str, weights_path: str, count: int) -> dict:
    import io

    import fastavro
    import numpy as np
    import torch
    from confluent_kafka import Consumer, TopicPartition

    from hyrax import Hyrax
    from hyrax.models.cnn import HyraxCNN
    from tests.stream.alerts import rubin_schema

    h = Hyrax(setup_logging=False)
    h.set_config("model.HyraxCNN.output_classes", 2)
    model = HyraxCNN(h.config, data_sample=np.zeros((1, 3, SIZE, SIZE), np.float32))
    model.load(Path(weights_path))
    model.eval()
    schema = rubin_schema()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bare-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])

    def stamp(data: bytes) -> np.ndarray:  # a plain FITS image: 36 header cards = one 2880-byte block
        return np.frombuffer(data, ">f4", SIZE * SIZE, 2880).reshape(SIZE, SIZE).astype(np.float32)

    def batch_of(messages):
        if not messages:
            return 0
        images = []
        for message in messages:
            record = fastavro.schemaless_reader(io.BytesIO(message.value()[5:]), schema, schema)
            images.append(
                np.stack([stamp(record[k]) for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference")])
            )
        with torch.inference_mode():
            model(torch.from_numpy(np.stack(images)))
        last = {}
        for message in messages:
            last[(message.topic(), message.partition())] = message.offset()
        consumer.commit(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False
        )
        return len(messages)

    done = 0
    while done == 0:  # untimed warm-up: the first batch (imports, group join)
        done += batch_of(consumer.consume(BATCH, 1.0))
    warm = done
    started = time.perf_counter()
    while done < count:
        messages = consumer.consume(min(BATCH, count - done), 1.0)
        if messages:
            done += batch_of(messages)
    seconds = time.perf_counter() - started
    consumer.close()
    return {"alerts": done - warm, "seconds": seconds, "rss": memory_mb()[1]}


def latency(bootstrap: str, topic: str, weights_path: str, rate: float, count: int) -> dict:
    """Produce ``count`` alerts at ``rate``/s while infer_stream runs; the write-minus-produce times."""
    import numpy as np
    from confluent_kafka import Producer

    values = packets(count)
    with tempfile.TemporaryDirectory() as work:
        h = stream_hyrax(work, bootstrap, topic, weights_path, f"latency-{topic}", poll=0.05, flush=0.1)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        producer.produce(topic, values[0])  # the first alert sizes the model
        producer.flush()

        def produce():
            time.sleep(8)  # the consumer joins and loads the model first
            start = time.perf_counter()
            for number, value in enumerate(values[1:], start=1):
                while time.perf_counter() < start + number / rate:
                    time.sleep(0.0005)
                producer.produce(topic, value)
                producer.poll(0)
            producer.flush()

        thread = threading.Thread(target=produce)
        thread.start()
        summary = h.infer_stream(idle_timeout=5)
        thread.join()
        table = summary.to_pandas().iloc[1:]
        waits = (table.written_ms - table.produced_ms).to_numpy()
        return {
            "p50": float(np.percentile(waits, 50)),
            "p99": float(np.percentile(waits, 99)),
            "alerts": len(table),
        }


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


def endurance(weights_path: str, count: int) -> dict:
    rss: list = []
    cls = generated_alerts_class(count, rss)
    with tempfile.TemporaryDirectory() as work:
        h = stream_hyrax(work, "127.0.0.1:9", "generated", weights_path, "endurance", poll=0.2, flush=0.2)
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rate", type=float, default=300.0, help="alerts/s produced in the latency case")
    parser.add_argument(
        "--endurance", type=int, metavar="N", help="only the endurance case: N generated alerts, one process"
    )
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *rest = args.case
        if name == "endurance":
            print(json.dumps(endurance(rest[0], int(rest[1]))))
        elif name == "latency":
            bootstrap, topic, weights_path, rate, count = rest
            print(json.dumps(latency(bootstrap, topic, weights_path, float(rate), int(count))))
        else:
            bootstrap, topic, weights_path, count = rest
            function = {"hyrax": case_hyrax, "bare": case_bare}[name]
            print(json.dumps(function(bootstrap, topic, weights_path, int(count))))
        return
    if args.endurance:
        with tempfile.TemporaryDirectory() as work:
            row = run_case(__file__, "endurance", weights(Path(work)), args.endurance)
        print(
            f"\n{row['alerts']:,} generated Rubin alerts (three 63x63 FITS stamps each) through h.infer_stream(), "
            f"one process, HyraxCNN batch {BATCH}, CPU (2 cores): {row['alerts'] / row['seconds']:,.0f} alerts/s; "
            f"every alert once: {row['unique'] and row['alerts'] == args.endurance}; committed through "
            f"{row['committed']:,}\n"
        )
        print(f"{'alerts':>10} {'resident':>9}")
        for done, mb in row["rss"]:
            print(f"{done:>10,} {mb:>6.0f} MB")
        print(f"{'peak':>10} {row['peak']:>6.0f} MB")
        return
    from tests.stream.broker import Broker

    with tempfile.TemporaryDirectory() as work, Broker() as broker:
        weights_path = weights(Path(work))
        values = packets(args.alerts)
        for repeat in range(args.repeats):
            for name in ("bare", "hyrax"):
                topic = f"{name}-{repeat}"
                broker.create_topic(topic, 2)
                broker.produce(topic, values)
        del values
        counters = {"bare": 0, "hyrax": 0}

        def topic_for(name):  # each run its own topic with the same alerts
            topic = f"{name}-{counters[name]}"
            counters[name] += 1
            return topic

        results = {"bare": [], "hyrax": []}
        for name in alternating(["bare", "hyrax"], args.repeats):
            results[name].append(
                run_case(__file__, name, broker.bootstrap, topic_for(name), weights_path, args.alerts)
            )
        broker.create_topic("latency", 2)
        delay = run_case(
            __file__, "latency", broker.bootstrap, "latency", weights_path, args.rate, int(args.rate * 20)
        )
    bare, hyrax = best_of(results["bare"], ("seconds",)), best_of(results["hyrax"], ("seconds",))
    print(
        f"\n{args.alerts:,} Rubin alerts (schema 11.1, three 63x63 FITS stamps each, ~58 KB) on a 2-partition topic of "
        f"a local Kafka-protocol broker; HyraxCNN (2 classes) on 3x63x63, batch {BATCH}, CPU (2 cores); best of "
        f"{args.repeats} runs each in a fresh process, the first batch untimed\n"
    )
    print(f"{'client':<8} {'alerts/s':>9} {'vs bare':>8} {'peak RSS':>9}")
    bare_rate = bare["alerts"] / bare["seconds"]
    for name, row in (("bare", bare), ("hyrax", hyrax)):
        rate = row["alerts"] / row["seconds"]
        print(f"{name:<8} {rate:>9,.0f} {rate / bare_rate:>8.2f} {row['rss']:>6.0f} MB")
    print(
        f"\nHyrax every alert once: {hyrax['unique']}; resident memory after each quarter: "
        + ", ".join(f"{v:.0f} MB" for v in hyrax["rss_quarters"])
    )
    print(
        f"latency (write - produce), {delay['alerts']:,} alerts produced at {args.rate:g}/s while infer_stream ran: "
        f"p50 {delay['p50']:.0f} ms, p99 {delay['p99']:.0f} ms"
    )


if __name__ == "__main__":
    main()
