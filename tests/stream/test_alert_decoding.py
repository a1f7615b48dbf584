"""Alert packets decoded without a broker: Rubin (Confluent wire format), ZTF-style containers with gzipped
stamps, JSON, and the reasons given for what is not an alert."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax.stream.alerts import AlertDecoder, AlertError
from tests.stream.alerts import container_packet, expected_image, rubin_packet


def test_rubin_ztf_and_json_alerts_become_samples():
    decoder = AlertDecoder()
    rubin = decoder.decode(rubin_packet(5))
    assert rubin["alert_id"] == 7_000_005 and rubin["object_id"] == "9002"
    np.testing.assert_array_equal(rubin["image"], expected_image(5))
    assert np.isfinite(rubin["diaSource.ra"])
    ztf = decoder.decode(container_packet(3))
    assert ztf["alert_id"] == 1_500_000_000_003 and ztf["object_id"] == "ZTF21aa00003"
    np.testing.assert_array_equal(ztf["image"], expected_image(3))
    assert ztf["candidate.magpsf"] == pytest.approx(18.5)
    plain = decoder.decode(b'{"alert_id": 4, "object_id": "x", "image": [1.0, 2.0]}')
    assert plain["alert_id"] == 4 and plain["image"].shape == (2,)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"hello", "neither an Avro alert"),
        (b"{not json", "not valid JSON"),
        (b'{"object_id": "x"}', "has no id"),
    ],
)
def test_what_is_not_an_alert_is_named(value, reason):
    with pytest.raises(AlertError, match=reason):
        AlertDecoder().decode(value)


def test_a_cut_short_rubin_alert_is_named():
    with pytest.raises(AlertError, match="cannot be read with its schema"):
        AlertDecoder().decode(rubin_packet(1)[:400])


def _ztf_records(numbers):
    import io

    import fastavro

    return [next(iter(fastavro.reader(io.BytesIO(container_packet(n))))) for n in numbers]


def test_alerts_exported_as_parquet_are_samples_and_messages(tmp_path, hyrax_config):
    """The Parquet layout brokers export (one row per alert, records as structs, stamps as binary): an
    archive read by AlertParquetDataset a row group at a time, and a one-alert Parquet message."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hyrax.datasets.alert_archive import AlertParquetDataset
    from hyrax.testing import check_dataset

    records = _ztf_records(range(30))
    archive = tmp_path / "archive"
    archive.mkdir()
    pq.write_table(pa.Table.from_pylist(records[:20]), archive / "part-0.parquet", row_group_size=7)
    pq.write_table(pa.Table.from_pylist(records[20:]), archive / "part-1.parquet")
    hyrax_config.set_config("data_set.normalize", "none")  # the stamps as they were made, to compare
    dataset = AlertParquetDataset(hyrax_config.config, archive)
    assert len(dataset) == 30 and {"image", "object_id", "alert_id", "candidate.magpsf"} <= set(
        dataset.fields()
    )
    for n in (0, 8, 19, 29):
        np.testing.assert_array_equal(dataset.get_image(n), expected_image(n))
        assert (
            dataset.get_object_id(n) == f"ZTF21aa{n:05d}" and dataset.get_alert_id(n) == 1_500_000_000_000 + n
        )
    assert dataset.getter("candidate.magpsf")(3) == pytest.approx(18.5)
    check_dataset(dataset)
    one = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records[4:5]), one)
    sample = AlertDecoder().decode(one.getvalue())
    np.testing.assert_array_equal(sample["image"], expected_image(4))
    two = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records[4:6]), two)
    with pytest.raises(AlertError, match="holds 2 rows, not one alert .*AlertParquetDataset"):
        AlertDecoder().decode(two.getvalue())


def test_published_kafka_dataset_consumer_config_and_stop(hyrax_config):
    """As a 0.13 user writes it: ``consumer_config`` is the dict the consumer is made with (edits before
    the first read apply), and ``stop()`` from another thread ends a ``for`` over the stream."""
    import threading
    import time

    from hyrax.datasets.kafka import KafkaStreamDataset

    hyrax_config.set_config("data_set.KafkaStreamDataset.group_id", "mine")
    dataset = KafkaStreamDataset(hyrax_config.config, "kafka://127.0.0.1:9/alerts")
    config = dataset.consumer_config
    assert (config["bootstrap.servers"], config["group.id"], config["enable.auto.commit"]) == (
        "127.0.0.1:9",
        "mine",
        False,
    )
    dataset.consumer_config["session.timeout.ms"] = 7000
    dataset.consumer_config["enable.auto.commit"] = True  # offsets stay ours: committed once written
    assert dataset.consumer_settings()["session.timeout.ms"] == 7000
    assert dataset.consumer_settings()["enable.auto.commit"] is False

    polled = threading.Event()

    def poll(count, timeout):  # an idle stream (no broker needed)
        polled.set()
        time.sleep(0.01)
        return []

    dataset.poll = poll
    reader = threading.Thread(target=lambda: list(dataset), daemon=True)
    reader.start()
    assert polled.wait(5)
    dataset.stop()
    reader.join(5)
    assert not reader.is_alive()


def test_a_json_message_named_by_the_requests_primary_id_field(hyrax_config):
    """Upstream's infer_stream_example sends {"id": ..., "image": ..., "label": ...} with
    primary_id_field = "id" (found by the compat harness): the id names the sample; without it, the
    message has no id Hyrax knows, and the error lists the names tried."""
    from hyrax.datasets.streaming import StreamProvider

    message = b'{"id": "sample-0001", "image": [[1.0, 2.0], [3.0, 4.0]], "label": 2}'
    sample = AlertDecoder().decode(message, ("id",))
    assert sample["object_id"] == "sample-0001" and sample["alert_id"] == "sample-0001"
    assert sample["image"].shape == (2, 2) and sample["label"] == 2
    with pytest.raises(AlertError, match="none of candid"):
        AlertDecoder().decode(message)
    # the notebook's data request: the provider hands its primary_id_field to the dataset
    hyrax_config.set_config("data_request", {"infer_stream": {"data": {
        "dataset_class": "KafkaStreamDataset", "data_location": "kafka://127.0.0.1:9/my_topic",
        "primary_id_field": "id", "fields": ["image", "label"]}}})  # fmt: skip
    provider = StreamProvider(hyrax_config.config, "infer_stream")
    assert provider.dataset.primary_id_field == "id"
