"""Who may talk to the live map's server: its user only.

A server on 127.0.0.1 is reachable by every page open in the user's browser and by every other user of
the machine. So each request, GET and POST alike, must

- name the server by its loopback address and its port (``Host: 127.0.0.1:PORT``, ``localhost:PORT``
  or ``[::1]:PORT``): a page of another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its
  own name as the Host and is refused;
- come from the map's own page when it says where it comes from (``Origin``);
- carry the session token of the address the server printed: ``?token=...`` (as Jupyter does), the
  cookie the first visit set (HttpOnly, SameSite=Strict), or an ``X-Hyrax-Token`` header.

>>> gate = SessionGate("s3cret", 5006)
>>> gate.refusal({"Host": "127.0.0.1:5006"}, {"token": "s3cret"}) is None
True
>>> gate.refusal({"Host": "attacker.example:5006"}, {"token": "s3cret"})[0]
403
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

#: The names of this machine's loopback interface a browser may use for the server.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

#: The request header a script may carry the token in (the page uses the address or the cookie).
TOKEN_HEADER = "X-Hyrax-Token"


@dataclass(frozen=True)
class SessionGate:
    """The checks of one server: its session ``token`` and the ``port`` it listens on."""

    token: str
    port: int

    @property
    def hosts(self) -> frozenset[str]:
        """The Host headers accepted: a loopback name with this server's port."""
        return frozenset(f"{name}:{self.port}" for name in LOOPBACK_NAMES)

    @property
    def cookie_name(self) -> str:
        # cookies ignore ports: one name per port keeps two maps on one machine apart
        return f"hyrax_map_{self.port}"

    def set_cookie(self) -> str:
        """The Set-Cookie value that lets the page's own requests carry the token after the first visit."""
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"

    def refusal(self, headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[int, str] | None:
        """Why this request is refused (status, reason), or None when it may be answered."""
        host = (headers.get("Host") or "").strip().lower()
        if host not in self.hosts:
            return 403, (
                f"this map answers only at its loopback address with its port (Host 127.0.0.1:{self.port}, "
                f"localhost:{self.port} or [::1]:{self.port}), not Host {host or '(none)'!r}; through an "
                f"SSH tunnel, forward the same port: ssh -L {self.port}:127.0.0.1:{self.port}"
            )
        origin = headers.get("Origin")
        if origin is not None and origin.strip().lower() != f"http://{host}":
            return 403, f"the map's data and labels are for the map page only, not for {origin}"
        if self.token_source(headers, query) is None:
            return 403, (
                "this map needs its session token: open the address `hyrax visualize` printed "
                "(view.serve() returns it), which ends in ?token=..."
            )
        return None

    def token_source(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """Where the request carries the right token ("query", "header", "cookie"), or None."""
        for source, given in (
            ("query", query.get("token")),
            ("header", headers.get(TOKEN_HEADER)),
            ("cookie", cookie_value(headers.get("Cookie") or "", self.cookie_name)),
        ):
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                return source
        return None


def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header, or None. Read by hand: other servers on
    127.0.0.1 (Jupyter's among them) set cookies there that http.cookies stops parsing at."""
    for part in header.split(";"):
        key, equals, value = part.strip().partition("=")
        if equals and key == name:
            return value
    return None
