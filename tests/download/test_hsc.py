"""The das_cutout protocol (src/hyrax/download/hsc.py): the request it sends, the names it reads, and how
it treats each fault of a real local HTTP service."""

from __future__ import annotations

import pytest

from hyrax.download.credentials import Credentials
from hyrax.download.hsc import (
    NO_CUTOUT,
    AuthenticationError,
    CutoutLine,
    CutoutOptions,
    DasCutoutClient,
    coordinate_list,
    multipart_body,
    parse_member_name,
)
from tests.download.das_server import PASSWORD, USERNAME, Faults, expected_pixels, parse_request

OPTIONS = CutoutOptions("pdr3_wide", "coadd", "22asec", "22asec", image=True, mask=False, variance=True)
LINES = [CutoutLine("HSC-I", 9813, 150.0931, 2.2058), CutoutLine("HSC-G", 9813, 150.25, -0.5)]


def test_request_body_is_the_documented_form():
    body, content_type = multipart_body(coordinate_list(LINES, OPTIONS))
    request = parse_request(content_type, body)  # the service's own parser
    assert " ".join(request.columns) == "rerun type filter tract ra dec sw sh image mask variance"
    assert (
        " ".join(request.lines[0].values())
        == "pdr3_wide coadd HSC-I 9813 150.0931deg 2.2058deg 22asec 22asec true false true"
    )


def test_a_line_without_tract_asks_the_service_to_find_it():
    text = coordinate_list([*LINES, CutoutLine("HSC-I", -1, 10.0, 1.0)], OPTIONS)
    assert text.splitlines()[0] == "#? rerun type filter tract ra dec sw sh image mask variance"
    assert text.splitlines()[3] == "pdr3_wide coadd HSC-I any 10.0deg 1.0deg 22asec 22asec true false true"


def test_coordinates_keep_full_precision():
    text = coordinate_list([CutoutLine("HSC-I", 1, 150.123456789012, -2.000000001)], OPTIONS)
    assert "150.123456789012deg -2.000000001deg" in text


@pytest.mark.parametrize(
    "name, expected",
    [
        ("arch-250101-120000/2-cutout-HSC-I-9813-pdr3_wide.fits", (2, 9813)),
        ("arch-x/17-cutout-NB0921-10054-pdr3_dud.fits", (17, 10054)),
        ("arch-x/3-cutout-HSC-G-notract-pdr3_wide.fits", (3, None)),
        ("arch-250101-120000/5-coadd+bg-HSC-Z-9813-pdr3_wide.fits", (5, 9813)),
        ("arch-x/README.txt", None),
    ],
)
def test_member_names(name, expected):
    assert parse_member_name(name, "pdr3_wide") == expected


def test_a_rerun_with_a_dash_is_still_parsed():
    assert parse_member_name("a/4-cutout-HSC-R-42-s21a-wide.fits", "s21a-wide") == (4, 42)


def client(service, attempts=3, timeout=5.0, password=PASSWORD):
    credentials = Credentials(USERNAME, password, "a test")
    return DasCutoutClient(
        service.url, credentials, OPTIONS, attempts=attempts, retry_wait=0.01, timeout=timeout
    )


def collect():
    got: dict[int, tuple] = {}

    def receive(index, tract, data):
        got[index] = (tract, len(data))
        return None

    return got, receive


def test_cutouts_arrive_with_their_line_and_tract(service):
    running = service()
    got, receive = collect()
    assert client(running).fetch(LINES, receive) == {}
    assert sorted(got) == [0, 1] and got[0][0] == 9813


def test_server_errors_are_retried_then_reported(service):
    running = service(Faults(server_errors=2))
    got, receive = collect()
    assert client(running).fetch(LINES, receive) == {} and len(got) == 2
    running = service(Faults(server_errors=10))
    failures = client(running, attempts=3).fetch(LINES, collect()[1])
    assert failures == {
        0: "the service answered HTTP 503 Service Unavailable: service temporarily unavailable (after 3 attempts)",
        1: "the service answered HTTP 503 Service Unavailable: service temporarily unavailable (after 3 attempts)",
    }


def test_a_cut_stream_keeps_what_arrived_and_asks_only_for_the_rest(service):
    running = service(Faults(truncated_requests=1))
    got, receive = collect()
    assert client(running).fetch(LINES * 2, receive) == {}
    assert sorted(got) == [0, 1, 2, 3]
    assert [len(r.lines) for r in running.requests] == [4, 3]


def test_a_stream_cut_every_time_is_reported_after_the_last_attempt(service):
    running = service(Faults(truncated_requests=10))
    got, receive = collect()
    failures = client(running, attempts=2).fetch(LINES * 2, receive)
    assert sorted(got) == [0, 1]  # each answer delivered one whole cutout before it stopped
    assert failures == {
        i: "the response was cut short (21,992 of 71,680 bytes) (after 2 attempts)" for i in (2, 3)
    }


def test_a_slow_service_times_out_and_is_retried(service):
    running = service(Faults(slow_requests=1, delay=1.5))
    got, receive = collect()
    assert client(running, timeout=0.4).fetch(LINES, receive) == {} and len(got) == 2
    failures = client(service(Faults(slow_requests=5, delay=1.0)), attempts=2, timeout=0.3).fetch(
        LINES, collect()[1]
    )
    assert failures[0] == "no data from the service for 0.3 s (download.timeout) (after 2 attempts)"


def test_no_member_means_no_cutout_without_retrying(service):
    running = service(Faults(no_cutout_ra=frozenset({150.25})))
    got, receive = collect()
    assert client(running).fetch(LINES, receive) == {1: NO_CUTOUT}
    assert len(running.requests) == 1


def test_unusable_data_is_asked_for_again(service):
    running = service()
    seen = []

    def receive(index, tract, data):
        seen.append(index)
        return "unreadable" if len(seen) == 1 else None

    assert client(running).fetch(LINES, receive) == {}
    assert seen == [0, 1, 0] and [len(r.lines) for r in running.requests] == [2, 1]


def test_wrong_password_stops_at_once_and_says_where_it_came_from(service):
    running = service()
    with pytest.raises(AuthenticationError, match=r"HTTP 401\) read from a test") as error:
        client(running, password="wrong").fetch(LINES, collect()[1])
    assert "wrong" not in str(error.value)
    assert running.unauthorized == 1  # no retries


def test_refused_request_is_not_retried(service):
    running = service()
    bad = [CutoutLine("HSC-Q", 1, 10.0, 1.0)]  # the service rejects the filter
    failures = client(running).fetch(bad, collect()[1])
    assert failures[0].startswith("the service refused the request: HTTP 400 Bad Request: line 2: bad filter")
    running.errors.clear()  # the refusal was the point


def test_content_is_the_requested_objects(service):
    import io

    from astropy.io import fits

    running = service()
    arrived = {}

    def receive(index, tract, data):
        arrived[index] = fits.getdata(io.BytesIO(data), ext=1)
        return None

    client(running).fetch(LINES, receive)
    for index, line in enumerate(LINES):
        assert (arrived[index] == expected_pixels(line.ra, line.dec, line.filter, (32, 32))).all()
