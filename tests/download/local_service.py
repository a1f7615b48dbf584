"""What the local test services share: an HTTP server on 127.0.0.1 in a background thread, a request
counter and a list of the client's protocol errors."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalService:
    """Subclasses call :meth:`serve` with their handler class (whose ``owner`` is set to the service)."""

    errors: list[str]

    def serve(self, handler: type[BaseHTTPRequestHandler], port: int, path: str) -> None:
        self._lock = threading.Lock()
        self._count = 0
        service = self

        class Handler(handler):
            owner = service

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def start(self):
        threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def next_number(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def note_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)


def started(factory):
    """A fixture body: yields ``start(**options) -> running service``; at the end stops each and fails the
    test if the client broke the protocol."""
    running: list[LocalService] = []

    def start(*args, **options):
        service = factory(*args, **options).start()
        running.append(service)
        return service

    yield start
    for service in running:
        service.stop()
        assert service.errors == [], f"the client broke the protocol: {service.errors[:5]}"
