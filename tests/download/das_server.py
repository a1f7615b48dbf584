"""A local stand-in for the HSC-SSP das_cutout service: real HTTP on 127.0.0.1, the same protocol, faults
on demand.

It checks every request as the service would (path, Basic authentication, a multipart form with one file
part ``list`` named ``coordlist.txt``, the ``#?`` header, the number and the values of each line's
columns) and answers with a tar stream of real FITS cutouts named
``arch-<time>/<N>-cutout-<filter>-<tract>-<rerun>.fits``. A cutout's pixels depend only on its ra, dec
and filter (:func:`expected_pixels`), so tests can check that each file holds the right object.
Protocol violations are answered with 400 and kept in ``service.errors``.

In a test::

    with DasService(faults=Faults(server_errors=2)) as service:
        ... service.url ...

As a process (for the benchmark; prints its URL on the first line)::

    python -m tests.download.das_server --shape 64 64
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler

import numpy as np

from tests.download.local_service import LocalService

USERNAME, PASSWORD = "alice", "s3cret-Pa55"
KNOWN_COLUMNS = {"rerun", "type", "filter", "tract", "ra", "dec", "sw", "sh", "image", "mask", "variance"}
REQUIRED_COLUMNS = {"rerun", "type", "filter", "ra", "dec", "sw", "sh"}
MAX_LINES = 990
_VALUE_RULES = {
    "rerun": re.compile(r"^pdr\d_[a-z]+$"),
    "type": re.compile(r"^(coadd|coadd/bg|warp)$"),
    "filter": re.compile(r"^(HSC-[GRIZY]2?|NB\d{3,4})$"),
    "tract": re.compile(r"^(\d+|any)$"),
    "ra": re.compile(r"^-?\d+(\.\d*)?(e[-+]?\d+)?(deg)?$"),
    "dec": re.compile(r"^-?\d+(\.\d*)?(e[-+]?\d+)?(deg)?$"),
    "sw": re.compile(r"^\d+(\.\d*)?(asec|amin|deg)$"),
    "sh": re.compile(r"^\d+(\.\d*)?(asec|amin|deg)$"),
    "image": re.compile(r"^(true|false)$"),
    "mask": re.compile(r"^(true|false)$"),
    "variance": re.compile(r"^(true|false)$"),
}


@dataclass
class Faults:
    """What goes wrong, counted in requests from the first (thread-safe)."""

    server_errors: int = 0  # the first k requests are answered 503
    slow_requests: int = 0  # the first k requests wait `delay` seconds before answering
    delay: float = 0.0
    truncated_requests: int = 0  # the first k answers stop in the middle of their second cutout
    corrupt_requests: int = 0  # the first k answers hold a cutout whose FITS data is cut short
    member_delay: float = 0.0  # seconds between cutouts of every answer (a slow service)
    no_cutout_ra: frozenset[float] = frozenset()  # positions (ra, 6 decimals) with no data: no member


@dataclass
class Request:
    """One request as the service read it."""

    lines: list[dict[str, str]]
    columns: list[str]


def expected_pixels(ra: float, dec: float, band: str, shape: tuple[int, int]) -> np.ndarray:
    """The image the service sends for a position and filter (float32, seeded by them)."""
    seed = zlib.crc32(f"{ra:.6f} {dec:.6f} {band}".encode())
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tract_of(ra: float, dec: float) -> int:
    """The tract the service finds for a position when the request gives none."""
    return 9000 + int(ra) % 1000


class FitsTemplate:
    """The bytes of an HSC-like cutout (empty primary HDU, image, then mask and variance if asked) with the
    headers built once; each cutout only writes its pixels in."""

    def __init__(self, shape: tuple[int, int], mask: bool = False, variance: bool = False):
        from astropy.io import fits

        hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.zeros(shape, np.float32), name="IMAGE")]
        if mask:
            hdus.append(fits.ImageHDU(np.zeros(shape, np.int32), name="MASK"))
        if variance:
            hdus.append(fits.ImageHDU(np.ones(shape, np.float32), name="VARIANCE"))
        buffer = io.BytesIO()
        fits.HDUList(hdus).writeto(buffer)
        self.bytes = buffer.getvalue()
        with fits.open(io.BytesIO(self.bytes)) as opened:
            self.image_at = opened.fileinfo(1)["datLoc"]
        self.shape = shape

    def cutout(self, pixels: np.ndarray) -> bytes:
        data = bytearray(self.bytes)
        raw = pixels.astype(">f4").tobytes()
        data[self.image_at : self.image_at + len(raw)] = raw
        return bytes(data)


@dataclass
class DasService(LocalService):
    """The service on 127.0.0.1 in a background thread. ``url`` is the download.service_url to use."""

    username: str = USERNAME
    password: str = PASSWORD
    shape: tuple[int, int] = (32, 32)
    faults: Faults = field(default_factory=Faults)
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unauthorized: int = 0
    cutouts_sent: int = 0

    def __post_init__(self):
        self._templates: dict[tuple[bool, bool], FitsTemplate] = {}
        self.serve(_Handler, self.port, "/das_cutout/pdr3")

    def template(self, mask: bool, variance: bool) -> FitsTemplate:
        with self._lock:
            key = (mask, variance)
            if key not in self._templates:
                self._templates[key] = FitsTemplate(self.shape, mask, variance)
            return self._templates[key]


class _Handler(BaseHTTPRequestHandler):
    owner: DasService

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # quiet: tests read the client's output

    def do_GET(self):
        self._plain(405, "use POST")

    def do_POST(self):
        service = self.owner
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if len(body) < length:  # the client died mid-request (a test kills it): nothing to answer
            self.close_connection = True
            return None
        if not self.path.endswith("/das_cutout/pdr3/cgi-bin/cutout"):
            return self._refuse(404, f"no such page: {self.path}")
        if self.headers.get("Authorization") != _basic(service.username, service.password):
            with service._lock:
                service.unauthorized += 1
            return self._plain(401, "authentication required", {"WWW-Authenticate": 'Basic realm="das"'})
        try:
            request = parse_request(self.headers.get("Content-Type", ""), body)
        except ValueError as error:
            return self._refuse(400, str(error))
        number = service.next_number()
        with service._lock:
            service.requests.append(request)
        faults = service.faults
        if number <= faults.slow_requests:
            time.sleep(faults.delay)
        if number <= faults.server_errors:
            return self._plain(503, "service temporarily unavailable")
        archive, offsets = build_archive(service, request, corrupt=number <= faults.corrupt_requests)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(archive)))
        self.end_headers()
        if number <= faults.truncated_requests and len(offsets) >= 2:
            self.wfile.write(archive[: offsets[1] + 1000])  # stop inside the second cutout
            self.wfile.flush()
            self.close_connection = True
            return
        self._send_slowly(archive, offsets, faults.member_delay)

    def _send_slowly(self, archive: bytes, offsets: list[int], pause: float) -> None:
        try:
            if not pause:
                self.wfile.write(archive)
                return
            bounds = [*offsets[1:], len(archive)]
            start = 0
            for end in bounds:
                self.wfile.write(archive[start:end])
                self.wfile.flush()
                start = end
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timed-out test request, a killed process)

    def _refuse(self, status: int, message: str) -> None:
        self.owner.note_error(message)
        self._plain(status, message)

    def _plain(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        data = (message + "\n").encode()
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def parse_request(content_type: str, body: bytes) -> Request:
    """The coordinate list of a request; ValueError saying what breaks the protocol."""
    if not content_type.startswith("multipart/form-data") or "boundary=" not in content_type:
        raise ValueError(f"expected a multipart/form-data body, got Content-Type {content_type!r}")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if len(parts) != 1:
        raise ValueError(f"expected one form part, got {len(parts)}")
    part = parts[0]
    name = part.get_param("name", header="content-disposition")
    if name != "list" or part.get_filename() != "coordlist.txt":
        raise ValueError(
            f"expected the file part 'list' named coordlist.txt, got {name!r} {part.get_filename()!r}"
        )
    if part.get_content_type() != "application/octet-stream":
        raise ValueError(f"expected application/octet-stream, got {part.get_content_type()}")
    return parse_coordinate_list(part.get_payload(decode=True).decode("utf-8"))


def parse_coordinate_list(text: str) -> Request:
    rows = [row for row in text.splitlines() if row.strip()]
    if not rows or not rows[0].startswith("#?"):
        raise ValueError("the coordinate list must start with a '#?' header line")
    columns = rows[0][2:].split()
    unknown = set(columns) - KNOWN_COLUMNS
    missing = REQUIRED_COLUMNS - set(columns)
    if unknown or missing or len(set(columns)) != len(columns):
        raise ValueError(f"bad header {columns}: unknown {sorted(unknown)}, missing {sorted(missing)}")
    if not 1 <= len(rows) - 1 <= MAX_LINES:
        raise ValueError(f"a list holds 1 to {MAX_LINES} lines, got {len(rows) - 1}")
    lines = []
    for number, row in enumerate(rows[1:], start=2):
        values = row.split()
        if len(values) != len(columns):
            raise ValueError(f"line {number} has {len(values)} values for {len(columns)} columns")
        line = dict(zip(columns, values, strict=True))
        for key, value in line.items():
            rule = _VALUE_RULES.get(key)
            if rule is not None and not rule.match(value):
                raise ValueError(f"line {number}: bad {key} {value!r}")
        ra, dec = _degrees(line["ra"]), _degrees(line["dec"])
        if not (0 <= ra < 360 and -90 <= dec <= 90):
            raise ValueError(f"line {number}: position {ra} {dec} is off the sky")
        lines.append(line)
    return Request(lines, columns)


def _degrees(value: str) -> float:
    """A position as the service reads it: degrees, with or without the unit "deg"."""
    return float(value.removesuffix("deg"))


def build_archive(service: DasService, request: Request, corrupt: bool = False) -> tuple[bytes, list[int]]:
    """The tar answer, and where each member starts in it."""
    stamp = time.strftime("%y%m%d-%H%M%S")
    buffer, offsets = io.BytesIO(), []
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for number, line in enumerate(request.lines, start=2):
            ra, dec = _degrees(line["ra"]), _degrees(line["dec"])
            if round(ra, 6) in service.faults.no_cutout_ra:
                continue
            template = service.template(line.get("mask") == "true", line.get("variance") == "true")
            data = template.cutout(expected_pixels(ra, dec, line["filter"], service.shape))
            if corrupt and number == 2:
                data = data[: len(data) - 2880]  # a FITS file whose data unit is cut short
            tract = int(line["tract"]) if line.get("tract", "any") != "any" else tract_of(ra, dec)
            kind = "coadd+bg" if line["type"] == "coadd/bg" else "cutout"
            info = tarfile.TarInfo(
                f"arch-{stamp}/{number}-{kind}-{line['filter']}-{tract}-{line['rerun']}.fits"
            )
            info.size, info.mtime = len(data), int(time.time())
            offsets.append(buffer.tell())
            archive.addfile(info, io.BytesIO(data))
            with service._lock:
                service.cutouts_sent += 1
    return buffer.getvalue(), offsets


def main() -> None:
    parser = argparse.ArgumentParser(description="A local das_cutout service for tests and benchmarks.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--member-delay", type=float, default=0.0)
    args = parser.parse_args()
    service = DasService(
        shape=tuple(args.shape), port=args.port, faults=Faults(member_delay=args.member_delay)
    )
    print(service.url, flush=True)
    try:
        service.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if service.errors:
            print("\n".join(service.errors[:20]), file=sys.stderr)


if __name__ == "__main__":
    main()
