"""Pieces of remote FITS files read as HTTP byte ranges: the headers to find where each HDU's data starts,
then only the rows a cutout needs.

:class:`RangeReader` keeps one pooled urllib3 connection manager per process (recreated after a fork, so
DataLoader workers each open their own), retries time-outs, dropped connections and 5xx answers with
urllib3's ``Retry`` (exponential backoff, ``Retry-After`` honoured), and remembers the layout of the last
files it read (headers are read once per file, not per cutout). Anything it cannot read is a
:class:`~hyrax.errors.DataError` naming the address and the object: a range the server cannot satisfy
(416: the file is shorter than its headers say), fewer bytes than asked for, an answer that is not FITS.
Local paths (or ``file://`` addresses) are read the same way, with ``pread``.

>>> reader = RangeReader(timeout=10, retries=2, retry_wait=0.5, connections=4)  # doctest: +SKIP
>>> layout = reader.layout("https://example.org/deep_coadd_g.fits", ("image",), "obj 1")  # doctest: +SKIP
>>> rows = reader.rows(layout, "image", 100, 164, "obj 1")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from hyrax.errors import DataError

logger = logging.getLogger(__name__)

BLOCK = 2880
CARD = 80
#: Bytes first asked for while reading a header (two FITS blocks: a small primary header and the image's),
#: doubled at each further request up to HEADER_CHUNK_MAX; a header past HEADER_MAX bytes is not one.
HEADER_CHUNK = 2 * BLOCK
HEADER_CHUNK_MAX = 32 * BLOCK
HEADER_MAX = 1000 * BLOCK
#: Files whose layout is remembered (a few KB each: a header's WCS and the HDUs' offsets).
LAYOUTS_KEPT = 1024
#: What each plane is called in a Rubin Exposure file (EXTNAME); "image" is otherwise the first 2-D image.
PLANE_NAMES = {"image": "IMAGE", "mask": "MASK", "variance": "VARIANCE"}
_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Plane:
    """An image HDU: where its data starts, its shape (rows, columns), pixel type and scaling."""

    index: int
    header: Any  # astropy.io.fits.Header
    data_offset: int
    shape: tuple[int, int]
    dtype: str
    bscale: float
    bzero: float


@dataclass
class Layout:
    """The planes found in one file, and its size when the server said it."""

    url: str
    planes: dict[str, Plane]
    size: int | None


class RangeReader:
    """Byte ranges of remote (or local) FITS files; see the module's documentation.

    Args:
        timeout: seconds to connect, and seconds without data before a read is abandoned (and retried).
        retries: further attempts after a time-out, a dropped connection or a 5xx answer.
        retry_wait: the backoff factor in seconds (waits of about retry_wait x 2^n between attempts).
        connections: connections kept open per host (the pool's size).
    """

    def __init__(
        self, timeout: float = 30.0, retries: int = 3, retry_wait: float = 0.5, connections: int = 8
    ):
        self.timeout, self.retries, self.retry_wait = float(timeout), int(retries), float(retry_wait)
        self.connections = int(connections)
        self.bytes_read = 0
        self.requests = 0
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._pool = None
        self._lock = threading.Lock()
        self._layouts: OrderedDict[str, Layout] = OrderedDict()
        self._said_whole_file: set[str] = set()

    def __getstate__(self) -> dict:  # a DataLoader worker opens its own connections
        return {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_lock", "_layouts")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start()

    def pool(self):
        """The process's pooled connection manager (a fork gets a fresh one: sockets are not shared)."""
        if self._pool is None or self._pid != os.getpid():
            import urllib3

            if self._pid != os.getpid():
                self._start()
            self._pool = urllib3.PoolManager(
                maxsize=self.connections, block=False, headers={"User-Agent": "hyrax-range-read"}
            )
        return self._pool

    # -- the file's layout ------------------------------------------------------------------------
    def layout(self, url: str, planes: tuple[str, ...], object_id: str) -> Layout:
        """Where the data of ``planes`` ("image", "mask", "variance") start in ``url``: its headers are
        read from the start of the file, HDU by HDU, until every plane is found (remembered per file)."""
        with self._lock:
            known = self._layouts.get(url)
            if known is not None and all(p in known.planes for p in planes):
                self._layouts.move_to_end(url)
                return known
        found = self._walk(url, planes, object_id)
        with self._lock:
            self._layouts[url] = found
            while len(self._layouts) > LAYOUTS_KEPT:
                self._layouts.popitem(last=False)
        return found

    def _walk(self, url: str, wanted: tuple[str, ...], object_id: str) -> Layout:
        from astropy.io import fits

        buffer, buffer_start, size = b"", 0, None  # bytes of the file from buffer_start
        planes: dict[str, Plane] = {}
        offset, index = 0, 0
        while not all(p in planes for p in wanted):
            if size is not None and offset >= size:
                missing = [p for p in wanted if p not in planes]
                raise DataError(
                    f"Object {object_id}: {url} has no {' or '.join(missing)} HDU ({index} HDUs read; "
                    f"the image is the first 2-D image, the mask and variance the HDUs named MASK and VARIANCE)."
                )
            if offset < buffer_start + len(buffer):  # keep what was read past the last HDU's data
                buffer, buffer_start = buffer[offset - buffer_start :], offset
            else:
                buffer, buffer_start = b"", offset
            end, scanned, ask = None, 0, HEADER_CHUNK
            while end is None:
                while end is None and scanned + BLOCK <= len(buffer):
                    chunk = buffer[scanned : scanned + BLOCK]
                    if scanned == 0:
                        _check_fits(chunk, index, url, object_id)
                    if any(chunk[i : i + 8] == b"END     " for i in range(0, BLOCK, CARD)):
                        end = scanned + BLOCK
                    scanned += BLOCK
                if end is not None:
                    break
                have = buffer_start + len(buffer)
                if size is not None and have >= size:
                    raise DataError(
                        f"Object {object_id}: {url} ends ({size} bytes) inside the header of HDU {index}: the "
                        f"file is truncated or not FITS."
                    )
                if len(buffer) > HEADER_MAX:
                    raise DataError(f"Object {object_id}: {url}: no END card in HDU {index}'s header.")
                data, total = self.read(url, have, ask, object_id, exact=False)
                ask = min(2 * ask, HEADER_CHUNK_MAX)
                size = total if total is not None else size
                if not data:
                    raise DataError(f"Object {object_id}: {url} sent no bytes at offset {have}.")
                buffer += data
            text = buffer[:end].decode("ascii", errors="replace")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                header = fits.Header.fromstring(text)
            data_bytes = _data_bytes(header)
            plane = _plane_of(header, index, planes)
            if plane in wanted and plane not in planes:
                planes[plane] = _image_plane(header, index, offset + end, url, object_id, plane)
            offset += end + -(-data_bytes // BLOCK) * BLOCK
            index += 1
        return Layout(url, planes, size)

    # -- pixels -----------------------------------------------------------------------------------
    def rows(self, layout: Layout, plane: str, first: int, stop: int, object_id: str) -> np.ndarray:
        """Rows ``first`` to ``stop`` (exclusive, 0-based) of ``plane``: one range request, scaled by
        BSCALE/BZERO (float32 for images and variances; integers as stored for masks)."""
        info = layout.planes[plane]
        width = info.shape[1]
        itemsize = np.dtype(info.dtype).itemsize
        start = info.data_offset + first * width * itemsize
        length = (stop - first) * width * itemsize
        data, _ = self.read(layout.url, start, length, object_id, exact=True)
        pixels = np.frombuffer(data, dtype=info.dtype).reshape(stop - first, width)
        if info.bscale != 1.0 or info.bzero != 0.0:
            return (pixels * info.bscale + info.bzero).astype(np.float32)
        return pixels.astype(pixels.dtype.newbyteorder("="))

    def read(
        self, url: str, start: int, length: int, object_id: str, exact: bool
    ) -> tuple[bytes, int | None]:
        """``length`` bytes of ``url`` from ``start`` and the file's size (None when not said). With
        ``exact`` fewer bytes are an error; without, a range past the end gives what there is."""
        if not url.startswith(("http://", "https://")):
            return self._read_local(url, start, length, object_id, exact)
        import urllib3

        what = f"Object {object_id}: {url} (bytes {start}-{start + length - 1})"
        retry = urllib3.Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.retry_wait,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            raise_on_status=True,
        )
        try:
            response = self.pool().request(
                "GET",
                url,
                headers={"Range": f"bytes={start}-{start + length - 1}"},
                retries=retry,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            )
        except urllib3.exceptions.MaxRetryError as error:
            reason = error.reason
            if isinstance(reason, urllib3.exceptions.ResponseError):
                text = f"the server kept failing ({reason})"
            elif isinstance(
                reason, urllib3.exceptions.ReadTimeoutError | urllib3.exceptions.ConnectTimeoutError
            ):
                text = f"no answer within data_set.RangeReadLSSTDataset.timeout = {self.timeout:g} s"
            elif isinstance(reason, urllib3.exceptions.ProtocolError):
                text = f"short read: the connection ended before every byte came ({reason})"
            else:
                text = str(reason)
            raise DataError(f"{what}: gave up after {self.retries + 1} attempt(s): {text}.") from None
        except urllib3.exceptions.HTTPError as error:
            raise DataError(f"{what}: {type(error).__name__}: {error}.") from None
        self.requests += 1
        data = response.data
        self.bytes_read += len(data)
        if response.status == 206:
            got = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if got is None or int(got.group(1)) != start:
                raise DataError(
                    f"{what}: the server sent Content-Range {response.headers.get('Content-Range')!r}, not the "
                    f"range asked for."
                )
            total = None if got.group(3) == "*" else int(got.group(3))
            promised = int(got.group(2)) - start + 1
            if len(data) != promised or (exact and len(data) < length):
                file_size = f" (the file is {total} bytes)" if total is not None else ""
                raise DataError(
                    f"{what}: short read: {len(data)} of {length} bytes came{file_size}; the file is truncated "
                    f"or the transfer was cut."
                )
            return data, total
        if response.status == 200:  # the server ignores Range: the whole file came
            host = url.split("/")[2]
            if host not in self._said_whole_file:
                self._said_whole_file.add(host)
                logger.warning(
                    "%s does not honour HTTP Range requests: each read downloads the whole file.", host
                )
            piece = data[start : start + length]
            if exact and len(piece) < length:
                raise DataError(f"{what}: short read: the file is {len(data)} bytes.")
            return piece, len(data)
        if response.status == 416:
            size = response.headers.get("Content-Range", "")
            raise DataError(
                f"{what}: range not satisfiable (HTTP 416{', ' + size if size else ''}): the file is shorter "
                f"than its FITS headers say (truncated?) or changed since its headers were read."
            )
        advice = " (a token or a signed address may be needed)" if response.status in (401, 403) else ""
        raise DataError(f"{what}: HTTP {response.status}{advice}: {data[:200]!r}.")

    def _read_local(self, path: str, start: int, length: int, object_id: str, exact: bool):
        path = path[len("file://") :] if path.startswith("file://") else path
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                data = os.pread(file.fileno(), length, start)
        except OSError as error:
            raise DataError(f"Object {object_id}: {path}: {error.strerror or error}.") from None
        self.requests += 1
        self.bytes_read += len(data)
        if exact and len(data) < length:
            raise DataError(
                f"Object {object_id}: {path} (bytes {start}-{start + length - 1}): short read: the file is "
                f"{size} bytes (truncated?)."
            )
        return data, size


def _check_fits(block: bytes, index: int, url: str, object_id: str) -> None:
    expected = b"SIMPLE  =" if index == 0 else b"XTENSION="
    if not block.startswith(expected):
        start = block[:60]
        kind = "an HTML page" if b"<" in start[:20] else "not FITS"
        raise DataError(
            f"Object {object_id}: {url} is not a FITS file where HDU {index} should start ({kind}: begins "
            f"{start!r})."
        )


def _data_bytes(header) -> int:
    """Bytes of an HDU's data, unpadded: |BITPIX|/8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    count = 1
    for axis in range(1, naxis + 1):
        count *= int(header.get(f"NAXIS{axis}", 0))
    return (
        abs(int(header["BITPIX"]))
        // 8
        * int(header.get("GCOUNT", 1))
        * (int(header.get("PCOUNT", 0)) + count)
    )


def _plane_of(header, index: int, found: dict) -> str | None:
    """The plane an HDU holds: by EXTNAME (IMAGE, MASK, VARIANCE), else the first 2-D image is the image."""
    name = str(header.get("EXTNAME", "")).strip().upper()
    for plane, extname in PLANE_NAMES.items():
        if name == extname:
            return plane
    is_image = index == 0 or str(header.get("XTENSION", "")).strip() == "IMAGE"
    if is_image and int(header.get("NAXIS", 0)) >= 2 and "image" not in found:
        return "image"
    return None


def _image_plane(header, index: int, data_offset: int, url: str, object_id: str, plane: str) -> Plane:
    if header.get("ZIMAGE"):
        raise DataError(
            f"Object {object_id}: {url}: the {plane} (HDU {index}) is tile-compressed; range reads need "
            f"uncompressed image HDUs (read such files with LSSTDataset)."
        )
    axes = [int(header.get(f"NAXIS{a}", 0)) for a in range(1, int(header.get("NAXIS", 0)) + 1)]
    if len(axes) < 2 or any(a != 1 for a in axes[2:]):
        raise DataError(f"Object {object_id}: {url}: HDU {index} ({plane}) is not a 2-D image (axes {axes}).")
    return Plane(
        index=index,
        header=header,
        data_offset=data_offset,
        shape=(axes[1], axes[0]),
        dtype=_BITPIX[int(header["BITPIX"])],
        bscale=float(header.get("BSCALE", 1.0)),
        bzero=float(header.get("BZERO", 0.0)),
    )
