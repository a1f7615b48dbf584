"""infer_stream on a real Kafka-protocol broker (tests/stream/broker.py): Rubin and ZTF-style alert packets
made of real galaxies, each alert's result exactly once through kill -9 and restarts, malformed packets
recorded, producer duplicates written once, credentials nowhere, clear errors for a missing topic or broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import lance
import numpy as np
import pytest

from hyrax import Hyrax
from hyrax.stream.serve import RESULTS, SKIPPED, read_results
from tests.fault_table import record_landing
from tests.stream.alerts import container_packet, rubin_packet
from tests.stream.broker import Broker

GALAXIES = {"dataset_class": "DecalsRingsDataset"}
MODEL = {
    "model.name": "HyraxAutoencoder",
    "model.HyraxAutoencoder.latent_dim": 16,
    "model.HyraxAutoencoder.base_channel_size": 8,
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(tmp_path_factory.mktemp("broker") / "broker.log") as running:
        yield running


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A quick autoencoder on the galaxies, and its vectors of every galaxy (what the stream must give)."""
    results = tmp_path_factory.mktemp("trained") / "results"
    h = Hyrax(setup_logging=False)
    for key, value in {
        **MODEL,
        "general.results_dir": str(results),
        "train.epochs": 1,
        "data_loader.num_workers": 0,
    }.items():
        h.set_config(key, value)
    h.set_config("data_request.train.data", GALAXIES)
    model = h.train()
    h.set_config("data_request.infer.data", GALAXIES)
    h.set_config("infer.model_weights_file", str(model.run_dir))
    vectors = h.infer()
    return model.run_dir, np.asarray(vectors[np.arange(len(vectors))])


def topic_with(broker, packets, partitions: int = 2) -> str:
    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, partitions)
    broker.produce(topic, packets, keys=[str(n).encode() for n in range(len(packets))])
    return topic


def stream_hyrax(broker, trained, topic: str, tmp_path, **settings) -> Hyrax:
    run_dir, _ = trained
    h = Hyrax(setup_logging=False)
    values = {
        **MODEL,
        "general.results_dir": str(tmp_path / "results"),
        "infer_stream.model_weights_file": str(run_dir),
        "data_set.KafkaStreamDataset.bootstrap_servers": broker.bootstrap,
        "data_set.KafkaStreamDataset.topics": [topic],
        "data_set.KafkaStreamDataset.group_id": f"group-{topic}",
        "data_set.KafkaStreamDataset.poll_timeout": 0.2,
        "data_set.KafkaStreamDataset.batch_flush_timeout": 0.5,
        "data_set.KafkaStreamDataset.peek_timeout": 30.0,
        "data_loader.batch_size": 32,
        "data_set.normalize": "none",  # the stamps are the galaxies' 0-1 pixels the model was trained on
        **settings,
    }
    for key, value in values.items():
        h.set_config(key, value)
    # a consumer that died is replaced within seconds (and a group forms within seconds), not librdkafka's
    # default 45 s session
    h.set_config("data_set.KafkaStreamDataset.consumer_options", {"session.timeout.ms": 6000})
    h.set_config(
        "data_request.infer_stream.alerts", {"dataset_class": "KafkaStreamDataset", "fields": ["image"]}
    )
    return h


def check_exactly_once(run_dir, numbers, vectors) -> None:
    """One row per alert number, holding the vector the model gives that alert's galaxy."""
    table = read_results(run_dir)
    assert not table.alert_id.duplicated().any()
    assert sorted(table.alert_id.astype(int) - 7_000_000) == sorted(numbers)
    got = np.stack(table.vector.to_numpy())
    expected = vectors[(table.alert_id.astype(int).to_numpy() - 7_000_000) % len(vectors)]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert (table.object_id.astype(int) == 9_000 + (table.alert_id.astype(int) - 7_000_000) // 2).all()


def test_every_alert_once_malformed_ones_recorded_and_offsets_committed(broker, trained, tmp_path):
    packets = [rubin_packet(n) for n in range(150)]
    packets[0] = b"not an alert at all"  # the first message, which would size the model, is unreadable
    packets[90] = packets[90][:300]  # an Avro alert cut short
    topic = topic_with(broker, packets)
    h = stream_hyrax(broker, trained, topic, tmp_path)
    summary = h.infer_stream(idle_timeout=2)
    assert summary.alerts == 148 and summary.skipped == 2, str(summary)
    check_exactly_once(summary.run_dir, [n for n in range(150) if n not in (0, 90)], trained[1])
    skipped = lance.dataset(str(summary.run_dir / SKIPPED)).to_table().to_pandas()
    assert len(skipped) == 2
    reasons = " | ".join(skipped.reason)
    assert "neither an Avro alert" in reasons and "cannot be read with its schema" in reasons
    # the offsets were committed: the group starts after them, in this run and in a new one
    again = h.infer_stream(resume=summary.run_dir, idle_timeout=1)
    assert again.alerts == 0 and again.duplicates == 0
    assert len(read_results(summary.run_dir)) == 148


def test_real_ztf_alerts_on_a_topic_match_the_model_trained_on_their_archive(broker, real_data, tmp_path):
    """The 17 real ZTF packets (NaN, 3.4e38 sentinels, CCD-edge stamps, one unreadable) on a topic, served
    with the defaults by a model trained on the same alerts' Parquet export: the stream's stamps go through
    the archive's image path, so each alert's vector is the one infer gives it from the archive."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.datasets.test_images import ztf_records

    packets = [path.read_bytes() for path in sorted((real_data / "ztf_alerts").glob("*.avro"))]
    archive = tmp_path / "archive"
    archive.mkdir()
    for version, records in ztf_records(real_data).items():
        for number, record in enumerate(records):  # one file an alert: the schema versions differ
            pq.write_table(pa.Table.from_pylist([record]), archive / f"v{version}_{number}.parquet")
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("data_set.on_bad_object", "skip")
    for key, value in MODEL.items():
        h.set_config(key, value)
    h.set_config("train.epochs", 1)
    for group in ("train", "infer"):
        h.set_config(
            f"data_request.{group}.alerts",
            {"dataset_class": "AlertParquetDataset", "data_location": str(archive)},
        )
    model = h.train()
    h.set_config("infer.model_weights_file", str(model.run_dir))
    archived = h.infer()
    by_alert = {
        str(i): np.asarray(v) for i, v in zip(archived.ids(), archived[np.arange(len(archived))], strict=True)
    }
    topic = topic_with(broker, packets, partitions=1)
    served = stream_hyrax(broker, (model.run_dir, None), topic, tmp_path, **{"data_set.normalize": "auto"})
    summary = served.infer_stream(idle_timeout=2)
    table = read_results(summary.run_dir)
    assert summary.alerts == 16 and summary.skipped == 1 and len(by_alert) == 16, str(summary)
    for alert_id, vector in zip(table.alert_id.astype(str), table.vector, strict=True):
        np.testing.assert_allclose(vector, by_alert[alert_id].ravel(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # decoding ZTF alerts is also checked without a broker (test_alert_decoding)
def test_ztf_style_container_alerts_and_producer_duplicates(broker, trained, tmp_path):
    from tests.stream.alerts import expected_image

    packets = [container_packet(n) for n in range(20)] + [container_packet(7), container_packet(3)]
    topic = topic_with(broker, packets, partitions=1)
    h = stream_hyrax(broker, trained, topic, tmp_path)
    summary = h.infer_stream(idle_timeout=2)
    table = read_results(summary.run_dir)
    assert summary.alerts == 20 and summary.duplicates == 2 and len(table) == 20
    assert sorted(table.alert_id.astype(int) - 1_500_000_000_000) == list(range(20))
    assert table.object_id.str.startswith("ZTF21aa").all()
    assert np.isfinite(np.stack(table.vector.to_numpy())).all()
    assert expected_image(0).shape == (3, 64, 64)


def _cli_config(write_config, broker, trained, topic, tmp_path, extra: str = "") -> str:
    run_dir, _ = trained
    return write_config(
        f"""
        [general]
        results_dir = "{tmp_path / "results"}"
        [model]
        name = "HyraxAutoencoder"
        [model.HyraxAutoencoder]
        latent_dim = 16
        base_channel_size = 8
        [infer_stream]
        model_weights_file = "{run_dir}"
        [data_loader]
        batch_size = 16
        [data_set]
        normalize = "none"
        [data_set.KafkaStreamDataset]
        bootstrap_servers = "{broker.bootstrap}"
        topics = ["{topic}"]
        group_id = "group-{topic}"
        poll_timeout = 0.2
        batch_flush_timeout = 0.3
        peek_timeout = 30.0
        {extra}
        [data_set.KafkaStreamDataset.consumer_options]
        "session.timeout.ms" = 6000
        [data_request.infer_stream.alerts]
        dataset_class = "KafkaStreamDataset"
        fields = ["image"]
        """
    )


def _stream_cli(config, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "hyrax", "infer_stream", "-c", str(config), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows_written(run):
    """Rows in the run's results table; 0 until its first version is committed (the folder comes first)."""
    if run is None or not list((run / RESULTS / "_versions").glob("*.manifest")):
        return 0
    return lance.dataset(str(run / RESULTS)).count_rows()


def _run_dir(results):
    runs = sorted(results.glob("*-infer_stream-*"))
    return runs[-1] if runs else None


@pytest.mark.parametrize(
    "kills",
    [pytest.param((150,), marks=pytest.mark.slow), pytest.param((40, 160, 300), marks=pytest.mark.slow)],
    ids=["one-kill", "three-kills"],
)
def test_kill_9_mid_stream_then_resume_gives_every_alert_exactly_once(
    broker, trained, tmp_path, write_config, kills
):
    numbers = list(range(400))
    topic = topic_with(broker, [rubin_packet(n) for n in numbers])
    secret = "pa55-w0rd-nobody-sees"
    credentials = tmp_path / "kafka.toml"
    credentials.write_text(
        f'"sasl.username" = "alice"\n"sasl.password" = "{secret}"\n"security.protocol" = "PLAINTEXT"\n'
    )
    config = _cli_config(
        write_config, broker, trained, topic, tmp_path, f'credentials_file = "{credentials}"'
    )
    results = tmp_path / "results"
    rows, landings = 0, []
    for threshold in kills:  # killed while alerts arrive, once that many results are written
        process = _stream_cli(config, *(("--resume", _run_dir(results)) if _run_dir(results) else ()))
        deadline = time.monotonic() + 120
        while rows < threshold:
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the stream did not get going"
            time.sleep(0.05)
            rows = _rows_written(_run_dir(results))
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        landed = _landed(_run_dir(results), every_version=False)
        landings.append({"threshold": threshold, **landed, "committed": _committed(broker, topic)})
    run = _run_dir(results)
    finished = _stream_cli(config, "--resume", run, "--idle-timeout", "2")
    out, err = finished.communicate(timeout=180)
    assert finished.returncode == 0, err[-3000:]
    assert "stopped by no alert for 2 s" in out
    check_exactly_once(run, numbers, trained[1])
    for path in [*run.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in out + err
    point = f"kill -9 once N rows written ({len(kills)} kill(s), each resumed)"
    for landed in landings:
        record_landing("infer_stream", point, landed, "resumed: every alert once, its model's vector")


def test_a_missing_topic_or_broker_is_a_clear_error_and_a_failed_exit(
    broker, trained, tmp_path, write_config
):
    config = _cli_config(write_config, broker, trained, "no-such-topic", tmp_path)
    process = _stream_cli(config)
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "has no topic 'no-such-topic'" in err and "Check data_set.KafkaStreamDataset.topics" in err

    from tests.stream.broker import free_port

    h = stream_hyrax(broker, trained, "alerts", tmp_path)
    h.set_config("data_set.KafkaStreamDataset.bootstrap_servers", f"127.0.0.1:{free_port()}")
    h.set_config(  # give up on a dead broker after 2 s instead of 10
        "data_set.KafkaStreamDataset.consumer_options",
        {"session.timeout.ms": 6000, "socket.connection.setup.timeout.ms": 2000},
    )
    from hyrax.datasets.kafka import BrokerError

    started = time.monotonic()
    with pytest.raises(BrokerError, match="Cannot reach the Kafka broker at 127.0.0.1:"):
        h.infer_stream(idle_timeout=1)
    assert time.monotonic() - started < 60


# -- fault points (hyrax.faults): killed at a known moment between the write and the commit ------------


def _committed(broker, topic: str, partitions: int = 2) -> int:
    """Messages the group has acknowledged on TOPIC (the sum of its committed offsets; none: 0)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"group-{topic}"})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    finally:
        consumer.close()
    return sum(max(o.offset, 0) for o in offsets)


def _landed(run, every_version: bool = True) -> dict:
    """The results table the killed run left: its versions (one a batch) and rows, and the rows of each
    version (what the n-th batch's commit held; left out when not EVERY_VERSION)."""
    if not list((run / RESULTS / "_versions").glob("*.manifest")):  # killed before its first commit
        return {"version": 0, "rows": 0, **({"rows_at": {}} if every_version else {})}
    table = lance.dataset(str(run / RESULTS))
    landed = {"version": table.version, "rows": table.count_rows()}
    if every_version:
        landed["rows_at"] = {
            v["version"]: table.checkout_version(v["version"]).count_rows() for v in table.versions()
        }
    return landed


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [f"{name}:{n}" for name in ("stream.batch_written", "stream.offsets_committed") for n in (1, 3, 5)],
)
def test_infer_stream_killed_at_each_point_resumes_every_alert_once(
    broker, trained, tmp_path, write_config, point
):
    """Killed after a batch's rows are written and before its offsets are committed (the resume is handed
    that batch again and must not write it twice), or after the n-th commit (the resume starts after it)."""
    import re

    from hyrax.faults import _parse
    from tests.conftest import run_hyrax
    from tests.test_fault_points import _killed_at

    numbers = list(range(200))
    topic = topic_with(broker, [rubin_packet(n) for n in numbers])
    config = _cli_config(write_config, broker, trained, topic, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "HYRAX_FAULT"}
    _killed_at(env, point, "infer_stream", "-c", config, "--idle-timeout", "5")
    run = _run_dir(tmp_path / "results")
    landed = {**_landed(run), "committed": _committed(broker, topic)}
    name, arrival, _ = _parse(point)
    rows_at = landed["rows_at"]
    if name == "stream.batch_written":  # n batches written; at most the n - 1 before them committed
        assert landed["version"] == arrival and landed["rows"] == rows_at[arrival], landed
        assert landed["committed"] <= rows_at.get(arrival - 1, 0) < landed["rows"], landed
    else:  # the n-th batch's offsets committed: exactly the rows of the first n batches (the writer may lead)
        assert landed["version"] >= arrival and landed["committed"] == rows_at[arrival] > 0, landed
    done = run_hyrax(
        "infer_stream", "-c", config, "--resume", run, "--idle-timeout", "2", env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = re.search(r"([\d,]+) alerts inferred .*?([\d,]+) already there", done.stdout)
    assert counts, done.stdout[-2000:]
    inferred, already = (int(c.replace(",", "")) for c in counts.groups())
    # handed again from the committed offsets: what was written after them is recognised, the rest inferred
    assert (inferred, already) == (200 - landed["rows"], landed["rows"] - landed["committed"]), landed
    check_exactly_once(run, numbers, trained[1])
    shown = {key: value for key, value in landed.items() if key != "rows_at"}
    record_landing("infer_stream", point, shown, "resumed: every alert once, none written twice")
    print(f"infer_stream {point}: {landed}")
