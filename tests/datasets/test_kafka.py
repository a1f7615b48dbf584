"""KafkaStreamDataset's batch decoding (what infer_stream uses): the samples decode() makes, a batch's
stamps normalised in one call; and the image path's batched normalisation, bit for bit the per-plane one."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax.datasets.images import ImagePipeline


class _Message:
    def __init__(self, value: bytes, offset: int):
        self._value, self._offset = value, offset

    def value(self):
        return self._value

    def topic(self):
        return "ztf"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def timestamp(self):
        return (1, 1_700_000_000_000 + self._offset)


@pytest.mark.parametrize("normalize", ["standardize", "arcsinh"])
def test_planes_normalised_together_are_the_bits_of_each_normalised_alone(normalize):
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, size=(12, 3, 9, 7)).astype(np.float32)
    images[1, 2, 4, 4] = np.nan  # a missing pixel: that plane goes the per-plane way
    images[2, 0] = 5.0  # no spread: the standard deviation's fallback
    images[3, 1, :, :5] = 1.0  # the median absolute deviation is 0, the std is not
    images[4] = np.round(images[4])  # ties, as 8-bit stamps have
    images[5, 2, 0, 0] = np.inf
    images[6, 1] = 3.0e38  # the sum of the plane overflows, every pixel finite
    pipeline = ImagePipeline.from_config(
        {"data_set": {"normalize": normalize, "nan_mode": "zero", "arcsinh_scale": 2.5}}, "Planes"
    )
    with np.errstate(over="ignore"):  # the std of the 3e38 plane (its fallback spread) overflows
        together = pipeline.finish(images.copy(), "batch")
        alone = images.copy()
        for plane in alone.reshape(-1, 9, 7):
            pipeline._normalize(plane)
    alone[~np.isfinite(alone)] = 0.0
    np.testing.assert_array_equal(together, alone)


def test_a_batch_decodes_to_the_samples_decode_makes_one_at_a_time(real_data, hyrax_config):
    """The real ZTF packets: NaN pixels, 3.4e38 sentinels, 63x41 edge stamps padded, one unreadable."""
    from hyrax.datasets.kafka import KafkaStreamDataset

    messages = [
        _Message(path.read_bytes(), offset)
        for offset, path in enumerate(sorted((real_data / "ztf_alerts").glob("*.avro")))
    ]
    one_by_one = KafkaStreamDataset(hyrax_config.config, "kafka://127.0.0.1:9/ztf")
    expected, unreadable = [], []
    for message in messages:
        try:
            expected.append(one_by_one.decode(message))
        except Exception as error:  # noqa: BLE001 - the reason is compared below
            unreadable.append((message.topic(), message.partition(), message.offset(), str(error)))
    batched = KafkaStreamDataset(hyrax_config.config, "kafka://127.0.0.1:9/ztf")
    samples, skipped = batched.decode_batch(messages)
    assert skipped == unreadable and len(unreadable) == 1
    assert len(samples) == len(expected) == len(messages) - 1
    for sample, alone in zip(samples, expected, strict=True):
        assert sample.keys() == alone.keys()
        assert sample["image"].shape == (3, 63, 63) and sample["image"].dtype == np.float32
        np.testing.assert_array_equal(sample["image"], alone["image"])
        assert sample["_position"] == alone["_position"] and sample["alert_id"] == alone["alert_id"]
