"""A file server on 127.0.0.1 that honours HTTP Range requests (206 with Content-Range, 416 past the end),
serving Rubin-like multi-extension FITS made from the real HSC scenes of tests/data/hsc_cosmos_scenes,
with faults injected per file: 500 answers, time-outs, answers cut short, HTML instead of FITS.

``python -m tests.datasets.range_server`` serves them by hand and prints a catalog's rows.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from tests.download.local_service import LocalService

SCENES = Path(__file__).parent.parent / "data" / "hsc_cosmos_scenes"
#: The scenes' five HSC bands stand in for Rubin's g, r, i, z, y.
BANDS = ("g", "r", "i", "z", "y")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def coadd_files() -> dict[str, bytes]:
    """``/<scene>/deep_coadd_<band>.fits`` -> bytes: a primary HDU with a 3-block header of metadata, then
    IMAGE (the band's real pixels, float32, with the scene's WCS), MASK (int32: bit 5 where the pixel is
    over 5 sigma) and VARIANCE (float32), as a Rubin Exposure file lays them out."""
    from astropy.io import fits
    from astropy.wcs import WCS

    files = {}
    for path in sorted(SCENES.glob("Cut_HSC*.fits")):
        with fits.open(path) as hdus:
            cube, header = hdus[0].data.astype(np.float32), hdus[0].header
        wcs_header = WCS(header, naxis=2).to_header()
        for number, band in enumerate(BANDS):
            image = cube[number]
            median = np.median(image)
            sigma = 1.4826 * np.median(np.abs(image - median))
            primary = fits.PrimaryHDU()
            for card in range(90):  # Rubin primaries carry many metadata cards: a header of 3 blocks
                primary.header[f"HIERARCH LSST META{card:03d}"] = float(card)
            primary.header["BAND"] = band
            image_hdu = fits.ImageHDU(image, header=wcs_header, name="IMAGE")
            mask = np.where(image > median + 5 * sigma, 32, 0).astype(np.int32)
            variance = (sigma**2 + np.clip(image - median, 0, None) * 0.05).astype(np.float32)
            out = io.BytesIO()
            fits.HDUList(
                [
                    primary,
                    image_hdu,
                    fits.ImageHDU(mask, header=wcs_header, name="MASK"),
                    fits.ImageHDU(variance, header=wcs_header, name="VARIANCE"),
                ]
            ).writeto(out)
            files[f"/{path.stem}/deep_coadd_{band}.fits"] = out.getvalue()
    return files


class RangeFileServer(LocalService):
    """Serves ``files`` (path -> bytes). ``faults[path]`` is a list of faults taken one per request
    ("500", "timeout", "short", "html"); ``always[path]`` one applied to every request. ``sent[path]``
    counts the body bytes written; ``requests`` lists (path, range header)."""

    def __init__(self, files: dict[str, bytes], delay: float = 1.0):
        self.files = files
        self.delay = delay
        self.faults: dict[str, deque] = defaultdict(deque)
        self.always: dict[str, str] = {}
        self.sent: dict[str, int] = defaultdict(int)
        self.requests: list[tuple[str, str | None]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.serve(_Handler, 0, "")

    def fault(self, path: str) -> str | None:
        with self._lock:
            self.requests.append(path)
            if self.faults[path]:
                return self.faults[path].popleft()
            return self.always.get(path)

    def stop(self) -> None:
        self.stopping.set()
        super().stop()


class _Handler(BaseHTTPRequestHandler):
    owner: RangeFileServer
    protocol_version = "HTTP/1.1"  # keep-alive: the client's pool reuses connections

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.owner
        path = urlsplit(self.path).path
        fault = owner.fault(path)
        body = owner.files.get(path)
        if body is None:
            return self._answer(404, b"not found")
        if fault == "timeout":  # sleep past the client's time-out, then answer to nobody
            owner.stopping.wait(owner.delay)
        if fault == "500":
            return self._answer(500, b"internal error")
        if fault == "html":
            body = b"<html><head><title>Sign in</title></head><body>Please sign in</body></html>\n" * 80
        requested = self.headers.get("Range")
        if requested is None:
            return self._answer(200, body, path=path)
        match = _RANGE.match(requested.strip())
        if match is None:
            owner.note_error(f"bad Range header {requested!r}")
            return self._answer(400, b"bad range")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else len(body) - 1
        if start >= len(body):
            return self._answer(416, b"", {"Content-Range": f"bytes */{len(body)}"})
        end = min(end, len(body) - 1)
        piece = body[start : end + 1]
        headers = {"Content-Range": f"bytes {start}-{end}/{len(body)}"}
        if fault == "short":  # promise every byte, send half, hang up
            self.close_connection = True
            return self._answer(206, piece, headers, path=path, send=len(piece) // 2)
        self._answer(206, piece, headers, path=path)

    def _answer(self, status, body, headers=None, path=None, send=None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/fits" if status in (200, 206) else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            out = body if send is None else body[:send]
            self.wfile.write(out)
            self.wfile.flush()
            if path is not None:
                with self.owner._lock:
                    self.owner.sent[path] += len(out)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its time-out)
            self.close_connection = True


def catalog_rows(server_url: str, half: int = 6) -> list[dict]:
    """Objects at whole pixels of each scene, ``half`` + 2 pixels or more from its edges, each with its
    position (degrees), its pixel (x, y) and one address per band."""
    from astropy.io import fits
    from astropy.wcs import WCS

    rows = []
    for path in sorted(SCENES.glob("Cut_HSC*.fits")):
        wcs = WCS(fits.getheader(path), naxis=2)
        for x, y in ((14, 14), (25, 25), (35, 18), (20, 36)):
            ra, dec = wcs.all_pix2world(x, y, 0)
            row = {"object_id": f"{path.stem}-{x}-{y}", "ra": float(ra), "dec": float(dec), "x": x, "y": y}
            row.update({f"url_{band}": f"{server_url}/{path.stem}/deep_coadd_{band}.fits" for band in BANDS})
            rows.append(row)
    return rows


if __name__ == "__main__":  # pragma: no cover - by hand
    with RangeFileServer(coadd_files()) as server:
        print(server.url, *server.files, sep="\n")
        print(catalog_rows(server.url)[0])
        while True:
            time.sleep(60)
