"""What every cutout service's client shares: stopping every request at once, and short reasons.

A client has ``fetch(lines, receive) -> {index: reason}`` and ``stop()``; ``receive(index, tract, data)``
returns None when it kept the cutout, else why the data is unusable.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import tarfile
import threading
from collections.abc import Callable

from hyrax.errors import ConfigError

STOPPED = "the download stopped before this cutout arrived"

#: receive(index of the line, tract from the service or None, FITS bytes) -> None, or why it is unusable.
Receiver = Callable[[int, "int | None", bytes], "str | None"]


class StoppableClient:
    """Retries, time-out and the connections open now, so that :meth:`stop` can shut them all."""

    def __init__(self, attempts: int, retry_wait: float, timeout: float):
        self.attempts, self.retry_wait, self.timeout = attempts, retry_wait, timeout
        self.stopped = threading.Event()
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Stop every request now (from any thread): open connections are shut, no retry starts."""
        self.stopped.set()
        with self._lock:
            for connection in list(self._open):
                if connection.sock is not None:
                    with contextlib.suppress(OSError):  # already closed
                        connection.sock.shutdown(socket.SHUT_RDWR)

    def _opened(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.add(connection)

    def _closed(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.discard(connection)
        connection.close()


def after(attempt: int) -> str:
    return "(after 1 attempt)" if attempt == 0 else f"(after {attempt + 1} attempts)"


def describe(error: BaseException, timeout: float) -> str:
    """A short reason for a recorded failure."""
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no data from the service for {timeout:g} s (download.timeout)"
    if isinstance(error, http.client.IncompleteRead):
        return "the response was cut short"
    if isinstance(error, tarfile.TarError | EOFError):
        return f"the response is not a complete tar archive ({error})"
    if isinstance(error, ConnectionRefusedError):
        return "cannot connect to the service (connection refused)"
    if isinstance(error, OSError) and error.strerror:
        return f"network error: {error.strerror}"
    return f"network error: {type(error).__name__}: {error}"


class AuthenticationError(ConfigError):
    """The service refused the credentials (HTTP 401, or 403 for a token)."""
