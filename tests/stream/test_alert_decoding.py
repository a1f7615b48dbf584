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
