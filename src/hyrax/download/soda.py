"""The Rubin Science Platform's image cutout service: IVOA SODA over HTTP, one cutout per request.

The protocol, as this client speaks it (SODA 1.0, synchronous):

* ``GET <download.lsst.service_url>?ID=<image id>&POS=<shape>`` with ``Authorization: Bearer <token>``.
  ``ID`` names one image (on the RSP an IVOA identifier of a Butler dataset, such as
  ``ivo://org.rubinobs/usdac/dp1?repo=dp1&id=<uuid>``, which an SIA query or the Butler gives); it is
  filled per object and band from ``download.lsst.dataset_id``, a template of the catalog's columns.
  ``POS`` is ``CIRCLE <ra> <dec> <radius>`` or, for a box, ``RANGE <ra1> <ra2> <dec1> <dec2>`` (SODA's
  box: it has no BOX shape), in degrees.
* The answer is a FITS file, usually multi-extension (an empty primary HDU, then IMAGE, MASK and
  VARIANCE with their WCS), or a redirect (303, 302, 307) to where the result waits: the redirect is
  followed, and the token is sent only to the service's own host.
* Errors follow DALI: a short text starting with the fault's name. 400 (``UsageFault``: a position
  off the image, a malformed ID) and 404 with ``NotFoundFault`` (no such image) fail that cutout; 401
  and 403 are a token the service refuses; a 404 without a fault is a wrong service address; 408, 429,
  5xx, time-outs and answers cut short are retried.

>>> options = SodaOptions("{image_{band}}", "circle", 10 / 3600, 10 / 3600)
>>> line = SodaLine("g", 150.1, 2.2, "ivo://x?id=7")
>>> soda_query(line, options)
'ID=ivo%3A%2F%2Fx%3Fid%3D7&POS=CIRCLE+150.1+2.2+0.001388888888888889'
>>> fill_dataset_id("{image_{band}}", "g", {"image_g": "ivo://x?id=7"})
'ivo://x?id=7'
"""

from __future__ import annotations

import http.client
import logging
import math
import os
import string
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

from hyrax.config import get_setting
from hyrax.download.client import STOPPED, AuthenticationError, Receiver, StoppableClient, after, describe
from hyrax.errors import ConfigError, HyraxError

logger = logging.getLogger(__name__)

#: Environment variables holding an RSP token, in the order they are looked for (ACCESS_TOKEN is the
#: one the RSP's own notebooks set).
TOKEN_VARIABLES = ("RSP_TOKEN", "ACCESS_TOKEN")
LSST_BANDS = ("u", "g", "r", "i", "z", "y")
SHAPES = ("circle", "box")
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 3


@dataclass(frozen=True)
class Token:
    """A bearer token and where it came from (for messages; the token itself is never shown)."""

    value: str = field(repr=False)
    source: str

    def authorization(self) -> str:
        return f"Bearer {self.value}"


def load_token(config: Mapping) -> Token:
    """``download.lsst.token_file`` (a file holding the token, or ``token = "..."``), else the environment
    variables RSP_TOKEN then ACCESS_TOKEN; a ConfigError saying where to put one if none has it."""
    file = get_setting(config, "download.lsst.token_file")
    if file is not None:
        return _token_from_file(Path(str(file)).expanduser())
    for variable in TOKEN_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return Token(value, f"the environment variable {variable}")
    raise ConfigError(
        "No Rubin Science Platform token found. Create one (RSP: Settings > Security tokens, with the "
        "read:image scope), save it in a private file (chmod 600) and set download.lsst.token_file to its "
        f"path, or put it in the environment variable {TOKEN_VARIABLES[0]}. It is never written anywhere."
    )


def _token_from_file(path: Path) -> Token:
    source = f"download.lsst.token_file = '{path}'"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"{source} does not exist. Save your RSP token in it, or set download.lsst.token_file = false "
            f"to read it from the environment variable {TOKEN_VARIABLES[0]}."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source} cannot be read: {getattr(error, 'strerror', None) or error}.") from None
    if text.startswith("token"):  # a TOML line: token = "..."
        import tomllib

        try:
            text = str(tomllib.loads(text).get("token", "")).strip()
        except tomllib.TOMLDecodeError:
            text = ""
    if not text or any(c.isspace() for c in text):
        raise ConfigError(
            f'{source} holds no token: write the token alone in the file (or as token = "...").'
        )
    return Token(text, f"the token file {path}")


@dataclass(frozen=True)
class SodaOptions:
    """What every request shares: the ID template, the cutout's shape and size (degrees)."""

    dataset_id: str
    shape: str
    width_deg: float
    height_deg: float

    def columns(self, bands: Sequence[str]) -> list[str]:
        """The catalog columns the ID template reads for these bands."""
        names: list[str] = []
        for band in bands:
            for _, name, _, _ in string.Formatter().parse(self.dataset_id.replace("{band}", band)):
                if name and name not in names:
                    names.append(name)
        return names


@dataclass(frozen=True)
class SodaLine:
    """One requested cutout; ``dataset_id`` is None when the catalog has no image ID for it."""

    filter: str
    ra: float
    dec: float
    dataset_id: str | None
    tract: int = -1


def fill_dataset_id(template: str, band: str, row: Mapping[str, object]) -> str | None:
    """The template with ``{band}`` and then the row's columns filled in; None when a value is missing."""
    values = {}
    text = template.replace("{band}", band)
    for _, name, _, _ in string.Formatter().parse(text):
        if name:
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
                return None
            values[name] = value
    return text.format(**values)


def soda_query(line: SodaLine, options: SodaOptions) -> str:
    """The query string of one cutout's request."""
    ra, dec = float(line.ra), float(line.dec)
    if options.shape == "circle":
        position = f"CIRCLE {ra!r} {dec!r} {max(options.width_deg, options.height_deg) / 2!r}"
    else:
        half_ra = options.width_deg / 2 / max(math.cos(math.radians(dec)), 1e-6)
        half_dec = options.height_deg / 2
        low, high = (ra - half_ra) % 360, (ra + half_ra) % 360
        south, north = max(dec - half_dec, -90.0), min(dec + half_dec, 90.0)
        position = f"RANGE {low!r} {high!r} {south!r} {north!r}"
    return urlencode([("ID", line.dataset_id or ""), ("POS", position)])


class _Transient(Exception):
    """Worth retrying: the service was busy, unreachable or slow, or the answer was cut short."""


class _Refused(Exception):
    """The service refused this cutout (bad position, no such image): retrying would not help."""


class SodaCutoutClient(StoppableClient):
    """Requests cutouts one by one on a kept-alive connection per thread, with retries; one instance is
    shared by the download's threads (the same interface as the HSC client: ``fetch`` and ``stop``)."""

    def __init__(
        self,
        service_url: str,
        token: Token,
        options: SodaOptions,
        attempts: int = 3,
        retry_wait: float = 30.0,
        timeout: float = 3600.0,
    ):
        super().__init__(attempts, retry_wait, timeout)
        self.url = service_url
        self.host = urlsplit(service_url).netloc
        self.token, self.options = token, options
        self._local = threading.local()

    def __getstate__(self):  # DataLoader workers get their own connections and locks
        state = self.__dict__.copy()
        for name in ("stopped", "_local", "_open", "_lock"):
            state.pop(name)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.stopped, self._local, self._open, self._lock = (
            threading.Event(),
            threading.local(),
            set(),
            threading.Lock(),
        )

    def close(self) -> None:
        """Close this thread's kept-alive connections."""
        for connection in getattr(self._local, "connections", {}).values():
            self._forget(connection)
        self._local.connections = {}

    def fetch(self, lines: Sequence[SodaLine], receive: Receiver) -> dict[int, str]:
        """Request each line in turn; hand each cutout to ``receive``. Returns {index: reason} for the lines
        that got no usable cutout."""
        failures: dict[int, str] = {}
        for index, line in enumerate(lines):
            if self.stopped.is_set():
                failures[index] = STOPPED
                continue
            if line.dataset_id is None:
                failures[index] = (
                    f"the catalog has no image ID for band {line.filter} (download.lsst.dataset_id = "
                    f"'{self.options.dataset_id}' reads an empty column)"
                )
                continue
            reason = self._fetch_one(index, line, receive)
            if reason is not None:
                failures[index] = reason
        return failures

    def cutout(self, line: SodaLine) -> bytes:
        """One cutout's FITS bytes, retried as the download retries; a HyraxError saying why if none came."""
        from hyrax.download.fits_check import image_shape_of

        received: list[bytes] = []

        def keep(_index: int, _tract: int | None, data: bytes) -> str | None:
            if image_shape_of(data) is None:
                return "the service sent an incomplete or unreadable FITS file"
            received.append(data)
            return None

        reason = self.fetch([line], keep).get(0)
        if reason is not None:
            raise HyraxError(reason)
        return received[0]

    def _fetch_one(self, index: int, line: SodaLine, receive: Receiver) -> str | None:
        reason = STOPPED
        for attempt in range(self.attempts):
            if attempt and self.stopped.wait(self.retry_wait * 2 ** (attempt - 1)):
                return STOPPED
            try:
                data = self._get(line)
            except _Transient as error:
                reason = STOPPED if self.stopped.is_set() else f"{error} {after(attempt)}"
                continue
            except _Refused as error:
                return str(error)
            problem = receive(index, None, data)
            if problem is None:
                return None
            reason = f"{problem} {after(attempt)}"
        return reason

    # -- one request -------------------------------------------------------------------------------
    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        key = (scheme, netloc)
        if key not in connections:
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            connection = kind(netloc, timeout=self.timeout)
            connections[key] = connection
            self._opened(connection)
        return connections[key]

    def _forget(self, connection: http.client.HTTPConnection) -> None:
        self._closed(connection)
        connections = getattr(self._local, "connections", {})
        for key, value in list(connections.items()):
            if value is connection:
                del connections[key]

    def _get(self, line: SodaLine) -> bytes:
        url = f"{self.url}{'&' if '?' in self.url else '?'}{soda_query(line, self.options)}"
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            connection = self._connection(parts.scheme, parts.netloc)
            headers = {"User-Agent": "hyrax-download", "Accept": "application/fits"}
            if parts.netloc == self.host:  # never hand the token to another host (a signed result URL)
                headers["Authorization"] = self.token.authorization()
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                connection.request("GET", target or "/", headers=headers)
                response = connection.getresponse()
                body = response.read()
            except HyraxError:
                raise
            except (OSError, http.client.HTTPException) as error:
                self._forget(connection)
                raise _Transient(describe(error, self.timeout)) from None
            if response.will_close:
                self._forget(connection)
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise _Transient(f"the service answered HTTP {response.status} without a Location")
                url = urljoin(url, location)
                continue
            self._check_status(response.status, response.reason, body, line)
            return body
        raise _Refused(f"the service redirected more than {_MAX_REDIRECTS} times")

    def _check_status(self, status: int, reason: str, body: bytes, line: SodaLine) -> None:
        if status == 200:
            return
        text = body[:2000].decode("utf-8", errors="replace").strip()
        first = text.splitlines()[0][:200] if text else ""
        if status in (401, 403):
            raise AuthenticationError(
                f"The cutout service at {self.host} refused the token read from {self.token.source} "
                f"(HTTP {status}{': ' + first if first else ''}). Check that it has not expired and has the "
                f"read:image scope (RSP: Settings > Security tokens), and download.lsst.service_url."
            )
        if status == 404 and "NotFoundFault" not in text:
            raise ConfigError(
                f"There is no SODA cutout service at {self.url} (HTTP 404). Check download.lsst.service_url: "
                f"the sync endpoint of the RSP's cutout service, for example "
                f"https://data.lsst.cloud/api/cutout/sync."
            )
        if status >= 500 or status in (408, 429):
            raise _Transient(f"the service answered HTTP {status} {reason}" + (f": {first}" if first else ""))
        if status == 404:
            raise _Refused(f"the service has no image {line.dataset_id} ({first})")
        raise _Refused(
            f"the service refused the cutout: HTTP {status} {reason}" + (f": {first}" if first else "")
        )
