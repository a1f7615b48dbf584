"""The HSC-SSP ``das_cutout`` service (PDR2, PDR3): one request per list of cutouts, a tar stream back.

The protocol, as this client speaks it:

* ``POST <download.service_url>/cgi-bin/cutout`` with HTTP Basic authentication and a
  ``multipart/form-data`` body holding one file part, field ``list``, file name ``coordlist.txt``: a
  coordinate list whose first line names the columns, then one line per cutout::

      #? rerun type filter tract ra dec sw sh image mask variance
      pdr3_wide coadd HSC-I 9813 150.0931deg 2.2058deg 22asec 22asec true false false

  A line with no known tract says ``any``: the service finds the tract from ra and dec.
* The answer is a tar stream. Each member is one FITS cutout named
  ``arch-<date>-<time>/<N>-cutout-<filter>-<tract>-<rerun>.fits`` (``coadd+bg`` for ``cutout`` when
  the type is ``coadd/bg``), where N is the line number of its request line (the header is line 1). A
  line the service has no cutout for has no member.
* 401 means wrong credentials; 5xx, 408, 429, time-outs and streams cut short are worth retrying.

>>> options = CutoutOptions("pdr3_wide", "coadd", "22asec", "22asec", image=True, mask=False, variance=False)
>>> print(coordinate_list([CutoutLine("HSC-I", 9813, 150.0931, 2.2058)], options), end="")
#? rerun type filter tract ra dec sw sh image mask variance
pdr3_wide coadd HSC-I 9813 150.0931deg 2.2058deg 22asec 22asec true false false
>>> parse_member_name("arch-250101-120000/2-cutout-HSC-I-9813-pdr3_wide.fits")
(2, 9813)
>>> parse_member_name("arch-250101-120000/3-coadd+bg-HSC-I-9813-pdr3_wide.fits")
(3, 9813)
"""

from __future__ import annotations

import http.client
import logging
import re
import secrets
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from hyrax.download.client import STOPPED, AuthenticationError, Receiver, StoppableClient, after, describe
from hyrax.download.credentials import Credentials
from hyrax.errors import ConfigError, HyraxError

logger = logging.getLogger(__name__)

COLUMNS = ("rerun", "type", "filter", "tract", "ra", "dec", "sw", "sh", "image", "mask", "variance")
NO_CUTOUT = "the service returned no cutout (no data in this filter and rerun at this position?)"
_MEMBER = re.compile(r"^(?P<line>\d+)-(?:cutout|coadd\+bg)-(?P<rest>.+)\.fits$")
_END_OF_ARCHIVE = bytes(1024)


class _Transient(Exception):
    """A failure worth retrying: the service was busy or unreachable, or the stream was cut short."""


class _Refused(Exception):
    """The service refused the request itself (4xx other than 401): retrying would not help."""


@dataclass(frozen=True)
class CutoutOptions:
    """What every line of a request shares, from ``[download]``."""

    rerun: str
    image_type: str
    width: str
    height: str
    image: bool
    mask: bool
    variance: bool


@dataclass(frozen=True)
class CutoutLine:
    """One requested cutout; ``tract`` < 0 when unknown."""

    filter: str
    tract: int
    ra: float
    dec: float


def coordinate_list(lines: Sequence[CutoutLine], options: CutoutOptions) -> str:
    """The text of the ``coordlist.txt`` part: a ``#?`` header naming the columns, one line per cutout."""
    flags = " ".join("true" if on else "false" for on in (options.image, options.mask, options.variance))
    rows = ["#? " + " ".join(COLUMNS)]
    for line in lines:
        tract = str(line.tract) if line.tract >= 0 else "any"
        rows.append(
            f"{options.rerun} {options.image_type} {line.filter} {tract} {float(line.ra)!r}deg "
            f"{float(line.dec)!r}deg {options.width} {options.height} {flags}"
        )
    return "\n".join(rows) + "\n"


def multipart_body(text: str) -> tuple[bytes, str]:
    """(body, Content-Type) of a form with the coordinate list as the file part ``list``."""
    boundary = f"hyrax-{secrets.token_hex(12)}"
    body = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="list"; filename="coordlist.txt"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n{text}\r\n--{boundary}--\r\n"
    ).encode()
    return body, f"multipart/form-data; boundary={boundary}"


def parse_member_name(name: str, rerun: str | None = None) -> tuple[int, int | None] | None:
    """(line number, tract) from a tar member's name, None for other names; the tract is None when the
    name holds none. Knowing the ``rerun`` lets it contain a "-"."""
    match = _MEMBER.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    rest = match.group("rest")
    rest = rest[: -len(rerun) - 1] if rerun and rest.endswith(f"-{rerun}") else rest.rsplit("-", 1)[0]
    tract = rest.rsplit("-", 1)[-1]
    return int(match.group("line")), int(tract) if tract.isdigit() else None


class DasCutoutClient(StoppableClient):
    """Requests lists of cutouts with retries; one instance is shared by the download's threads."""

    def __init__(
        self,
        service_url: str,
        credentials: Credentials,
        options: CutoutOptions,
        attempts: int = 3,
        retry_wait: float = 30.0,
        timeout: float = 3600.0,
    ):
        super().__init__(attempts, retry_wait, timeout)
        parts = urlsplit(service_url)
        self.secure = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.path = parts.path.rstrip("/") + "/cgi-bin/cutout"
        self.credentials, self.options = credentials, options

    def fetch(self, lines: Sequence[CutoutLine], receive: Receiver) -> dict[int, str]:
        """Request ``lines``; hand each cutout to ``receive`` as it arrives. Returns {index: reason} for
        the lines that got no usable cutout. Cutouts that arrived before a failure are kept; only the
        rest are asked for again, after ``retry_wait`` seconds, doubling each time."""
        pending, failures, reason = list(range(len(lines))), {}, STOPPED
        for attempt in range(self.attempts):
            if attempt and self.stopped.wait(self.retry_wait * 2 ** (attempt - 1)):
                reason = STOPPED
                break
            if self.stopped.is_set():
                break
            received: set[int] = set()
            unusable: dict[int, str] = {}
            try:
                self._exchange([lines[i] for i in pending], pending, received, unusable, receive)
            except _Transient as error:
                reason = STOPPED if self.stopped.is_set() else f"{error} {after(attempt)}"
                pending = [i for i in pending if i not in received]
                continue
            except _Refused as error:
                failures.update({i: str(error) for i in pending if i not in received})
                return failures
            failures.update({i: NO_CUTOUT for i in pending if i not in received and i not in unusable})
            pending = sorted(unusable)
            if not pending:
                return failures
            reason = f"{unusable[pending[0]]} {after(attempt)}"
        failures.update({i: reason for i in pending})
        return failures

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=self.timeout)

    def _exchange(
        self,
        lines: list[CutoutLine],
        indices: list[int],
        received: set[int],
        unusable: dict[int, str],
        receive: Receiver,
    ) -> None:
        """One POST of ``lines`` (``indices[k]`` is line k's index in the caller's list)."""
        body, content_type = multipart_body(coordinate_list(lines, self.options))
        connection = self._connect()
        self._opened(connection)
        try:
            connection.request(
                "POST",
                self.path,
                body=body,
                headers={
                    "Content-Type": content_type,
                    "Authorization": self.credentials.authorization(),
                    "User-Agent": "hyrax-download",
                },
            )
            response = connection.getresponse()
            self._check_status(response)
            self._read_archive(response, indices, received, unusable, receive)
        except HyraxError:
            raise  # wrong credentials, a disk that cannot be written: not the network's fault
        except (OSError, http.client.HTTPException, tarfile.TarError, EOFError) as error:
            raise _Transient(describe(error, self.timeout)) from None
        finally:
            self._closed(connection)

    def _check_status(self, response: http.client.HTTPResponse) -> None:
        status = response.status
        if status == 200:
            return
        if status == 401:
            raise AuthenticationError(
                f"The HSC service at {self.host} refused the username and password (HTTP 401) read from "
                f"{self.credentials.source}. Check them (they are your HSC-SSP data-release account's), and "
                f"download.service_url: PDR2 and PDR3 accounts differ."
            )
        if status == 404:  # every request would fail the same way: a wrong address, not a bad cutout
            raise ConfigError(
                f"There is no cutout service at {self.host}{self.path} (HTTP 404). Check "
                f"download.service_url: the das_cutout address of your data release, for example "
                f"https://hsc-release.mtk.nao.ac.jp/das_cutout/pdr3 (requests go to <service_url>/cgi-bin/cutout)."
            )
        detail = response.read(2000).decode("utf-8", errors="replace").strip().splitlines()
        text = f"HTTP {status} {response.reason}" + (f": {detail[0][:200]}" if detail else "")
        if status >= 500 or status in (408, 429):
            raise _Transient(f"the service answered {text}")
        raise _Refused(f"the service refused the request: {text}")

    def _read_archive(
        self,
        response: http.client.HTTPResponse,
        indices: list[int],
        received: set[int],
        unusable: dict[int, str],
        receive: Receiver,
    ) -> None:
        stream = _CheckedStream(response)
        try:
            self._read_members(stream, indices, received, unusable, receive)
        except (tarfile.TarError, EOFError) as error:
            raise _Transient(stream.diagnose(error)) from None
        stream.finish()

    def _read_members(
        self,
        stream: _CheckedStream,
        indices: list[int],
        received: set[int],
        unusable: dict[int, str],
        receive: Receiver,
    ) -> None:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                parsed = parse_member_name(member.name, self.options.rerun) if member.isfile() else None
                if parsed is None or not 2 <= parsed[0] < len(indices) + 2:
                    if member.isfile():
                        logger.debug("ignored tar member %s: not a cutout of this request", member.name)
                    continue
                index = indices[parsed[0] - 2]
                handle = archive.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise _Transient("the response was cut short inside a cutout")
                if index in received:
                    continue  # one cutout per line: a repeated member is ignored
                problem = receive(index, parsed[1], data)
                if problem is None:
                    received.add(index)
                    unusable.pop(index, None)
                else:
                    unusable[index] = problem


class _CheckedStream:
    """The response body, read by tarfile, and checked for being whole when tarfile is done with it.

    ``http.client`` returns a short read, not an error, when a body with a Content-Length ends early, so
    the bytes are counted; a body without length or chunking must at least end with the tar end marker.
    """

    def __init__(self, response: http.client.HTTPResponse):
        self.response = response
        length = response.getheader("Content-Length")
        self.expected = int(length) if length and length.isdigit() else None
        self.delimited = self.expected is not None or "chunked" in (
            response.getheader("Transfer-Encoding") or ""
        )
        self.count = 0
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.response.read(None if size is None or size < 0 else size)
        self.count += len(data)
        self.tail = (self.tail + data[-1024:])[-1024:]
        return data

    def finish(self) -> None:
        """Read what tarfile left; a body shorter than announced, or unterminated, was cut short."""
        while self.read(1 << 16):
            pass
        if self.expected is not None and self.count != self.expected:
            raise _Transient(f"the response was cut short ({self.count:,} of {self.expected:,} bytes)")
        if not self.delimited and not self.tail.endswith(_END_OF_ARCHIVE):
            raise _Transient("the response was cut short (the tar archive has no end marker)")

    def diagnose(self, error: BaseException) -> str:
        """Why tarfile could not read the body: it was cut short, or it is not a tar archive."""
        try:
            self.finish()
        except _Transient as cut:
            return str(cut)
        except (OSError, http.client.HTTPException):
            return "the response was cut short"
        return f"the response is not a tar archive of cutouts ({error})"
