"""A local SODA image cutout service in the manner of the Rubin Science Platform's: real HTTP on
127.0.0.1, cutting from real HSC scenes (tests/data/hsc_cosmos_scenes), faults on demand.

``GET /api/cutout/sync?ID=<id>&POS=<shape>`` with ``Authorization: Bearer <token>``:

* ``ID`` is ``ivo://hyrax.test/cosmos?scene=<scene>&band=<g|r|i|z|y>`` (the scene's HSC g, r, i, z, y
  planes stand in for Rubin's bands); an unknown one is ``404 NotFoundFault``;
* ``POS`` is ``CIRCLE ra dec r`` or ``RANGE ra1 ra2 dec1 dec2`` (degrees); anything else, a second
  ``ID`` or ``POS``, or a position off the image is ``400 UsageFault``;
* the answer is a multi-extension FITS file: an empty primary HDU, then ``IMAGE`` (float32, with the
  cutout's WCS), ``MASK`` and ``VARIANCE``, as Rubin's service sends; or, with ``redirect=True``, a
  303 to ``http://localhost:<port>/api/cutout/results/<n>`` (another host name, as a signed storage URL
  is) where the same file waits, served without a token.

Protocol violations by the client (a missing parameter, a malformed POS) are kept in ``errors``; a test
fixture fails the test if there are any. Run as a process for the benchmark (prints its URL)::

    python -m tests.download.soda_server --latency 0.02
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from tests.download.local_service import LocalService

SCENES_DIR = Path(__file__).resolve().parents[1] / "data" / "hsc_cosmos_scenes"
TOKEN = "gt-hyrax-test.token-Xq3v9"
BANDS = ("g", "r", "i", "z", "y")
ID_PREFIX = "ivo://hyrax.test/cosmos?"
PATH = "/api/cutout/sync"


def dataset_id(scene: str, band: str) -> str:
    return f"{ID_PREFIX}scene={scene}&band={band}"


@dataclass
class SodaFaults:
    """What goes wrong, counted in cutout requests from the first (thread-safe)."""

    server_errors: int = 0  # the first k requests are answered 503
    slow_requests: int = 0  # the first k requests wait `delay` seconds before answering
    delay: float = 0.0
    truncated_requests: int = 0  # the first k answers stop half way (the connection closes)
    corrupt_requests: int = 0  # the first k answers hold a FITS file whose data is cut short
    latency: float = 0.0  # seconds every request waits (a distant service)


@dataclass
class Scene:
    cube: np.ndarray  # (bands, height, width) float32
    wcs: object

    @classmethod
    def read(cls, path: Path) -> Scene:
        from astropy.io import fits
        from astropy.wcs import WCS

        with fits.open(path) as hdus:
            cube = np.asarray(hdus[0].data, dtype=np.float32)
            wcs = WCS(hdus[0].header).celestial
        return cls(cube, wcs)


def read_scenes() -> dict[str, Scene]:
    return {path.stem: Scene.read(path) for path in sorted(SCENES_DIR.glob("*.fits"))}


def scene_centres(
    scenes: dict[str, Scene], per_side: int = 3, margin: int = 12
) -> list[tuple[str, float, float]]:
    """(scene, ra, dec) of a grid of positions well inside each scene."""
    positions = []
    for name, scene in scenes.items():
        height, width = scene.cube.shape[1:]
        for y in np.linspace(margin, height - 1 - margin, per_side):
            for x in np.linspace(margin, width - 1 - margin, per_side):
                sky = scene.wcs.pixel_to_world(x, y)
                positions.append((name, float(sky.ra.deg), float(sky.dec.deg)))
    return positions


def cut(scene: Scene, band: str, pos: str):
    """The Cutout2D a POS asks for; ValueError (a UsageFault) when it is malformed or off the image."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError

    words = pos.split()
    try:
        values = [float(v) for v in words[1:]]
    except ValueError:
        raise ValueError(f"UsageFault: POS {pos!r} has a value that is not a number") from None
    if words[:1] == ["CIRCLE"] and len(values) == 3:
        ra, dec, radius = values
        size = (2 * radius * u.deg, 2 * radius * u.deg)
    elif words[:1] == ["RANGE"] and len(values) == 4:
        ra1, ra2, dec1, dec2 = values
        ra, dec = (ra1 + ra2) / 2, (dec1 + dec2) / 2
        size = ((dec2 - dec1) * u.deg, (ra2 - ra1) * np.cos(np.radians(dec)) * u.deg)
    else:
        raise ValueError(f"UsageFault: POS {pos!r} is not CIRCLE ra dec r or RANGE ra1 ra2 dec1 dec2")
    if not (0 <= ra < 360 and -90 <= dec <= 90) or min(s.value for s in size) <= 0:
        raise ValueError(f"UsageFault: POS {pos!r} is off the sky or empty")
    try:
        return Cutout2D(
            scene.cube[BANDS.index(band)], SkyCoord(ra * u.deg, dec * u.deg), size, wcs=scene.wcs, mode="trim"
        )
    except (NoOverlapError, ValueError):
        raise ValueError(f"UsageFault: POS {pos!r} does not overlap the image") from None


def cutout_fits(cutout) -> bytes:
    from astropy.io import fits

    header = cutout.wcs.to_header()
    hdus = fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(cutout.data.astype(np.float32), header=header, name="IMAGE"),
            fits.ImageHDU(np.zeros(cutout.data.shape, np.int32), header=header, name="MASK"),
            fits.ImageHDU(np.ones(cutout.data.shape, np.float32), header=header, name="VARIANCE"),
        ]
    )
    buffer = io.BytesIO()
    hdus.writeto(buffer)
    return buffer.getvalue()


@dataclass
class SodaService(LocalService):
    """The service on 127.0.0.1 in a background thread; ``url`` is download.lsst.service_url."""

    token: str = TOKEN
    faults: SodaFaults = field(default_factory=SodaFaults)
    redirect: bool = False
    port: int = 0
    errors: list[str] = field(default_factory=list)
    queries: list[dict[str, list[str]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    result_headers: list[dict[str, str]] = field(default_factory=list)  # of the redirected requests
    unauthorized: int = 0
    cutouts_sent: int = 0

    def __post_init__(self):
        self.scenes = read_scenes()
        self._results: dict[str, bytes] = {}
        self.cached: dict[tuple[str, str], bytes] = {}
        self.serve(_Handler, self.port, PATH)

    def expected(self, scene: str, band: str, pos: str) -> np.ndarray:
        """The pixels a request for this scene, band and POS gets."""
        return cut(self.scenes[scene], band, pos).data.astype(np.float32)


class _Handler(BaseHTTPRequestHandler):
    owner: SodaService
    protocol_version = "HTTP/1.1"  # keep-alive, as the real service
    disable_nagle_algorithm = True  # as production servers: no 40 ms delayed-ACK stalls per answer

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_POST(self):
        self._plain(405, "UsageFault: use GET")

    def do_GET(self):
        service = self.owner
        parts = urlsplit(self.path)
        if parts.path.startswith("/api/cutout/results/"):
            with service._lock:
                service.result_headers.append(dict(self.headers))
            data = service._results.pop(parts.path.rsplit("/", 1)[-1], None)
            if data is None:
                return self._plain(404, "NotFoundFault: no such result")
            return self._fits(data)
        if parts.path != PATH:
            return self._plain(404, "Not Found", content_type="text/html")
        if self.headers.get("Authorization") != f"Bearer {service.token}":
            with service._lock:
                service.unauthorized += 1
            return self._plain(401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="rsp"'})
        query = parse_qs(parts.query, keep_blank_values=True)
        with service._lock:
            service.queries.append(query)
            service.headers.append(dict(self.headers))
        ids, positions = query.get("ID", []), query.get("POS", [])
        if len(ids) != 1 or len(positions) != 1 or set(query) - {"ID", "POS"}:
            service.note_error(f"expected one ID and one POS, got {query}")
            return self._plain(400, "UsageFault: give exactly one ID and one POS")
        number = service.next_number()
        faults = service.faults
        if faults.latency:
            time.sleep(faults.latency)
        if number <= faults.slow_requests:
            time.sleep(faults.delay)
        if number <= faults.server_errors:
            return self._plain(503, "ServiceUnavailable: try again later")
        image_id, pos = ids[0], positions[0]
        fields = parse_qs(image_id.removeprefix(ID_PREFIX)) if image_id.startswith(ID_PREFIX) else {}
        scene = service.scenes.get(fields.get("scene", [""])[0])
        band = fields.get("band", [""])[0]
        if scene is None or band not in BANDS:
            return self._plain(404, f"NotFoundFault: no image {image_id}")
        data = service.cached.get((image_id, pos))
        if data is None:
            try:
                data = cutout_fits(cut(scene, band, pos))
            except ValueError as error:
                if "not a number" in str(error) or "is not CIRCLE" in str(error):
                    service.note_error(str(error))
                return self._plain(400, str(error))
            with service._lock:
                if len(service.cached) < 4096:  # the same cutout again is sent from memory
                    service.cached[(image_id, pos)] = data
        if number <= faults.corrupt_requests:
            data = data[: len(data) - 2880]
        with service._lock:
            service.cutouts_sent += 1
        if service.redirect:
            key = f"r{number}"
            service._results[key] = data
            # to another host name, as a signed storage URL is
            where = f"http://localhost:{service.server.server_address[1]}/api/cutout/results/{key}"
            return self._plain(303, "See Other", {"Location": where})
        if number <= faults.truncated_requests:
            return self._fits(data, cut_short=True)
        return self._fits(data)

    def _fits(self, data: bytes, cut_short: bool = False) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/fits")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if cut_short else data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if cut_short:
            self.close_connection = True

    def _plain(self, status: int, message: str, headers: dict | None = None, content_type="text/plain"):
        data = (message + "\n").encode()
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description="A local SODA cutout service for tests and benchmarks.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every request waits")
    args = parser.parse_args()
    service = SodaService(port=args.port, faults=SodaFaults(latency=args.latency))
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
