"""The map as a live app: a small HTTP server on 127.0.0.1 that holds every object's coordinates (and
reads the rest as needed) and answers the page's questions as the user pans, zooms, selects and clicks.

- ``/``: the page (the same Bokeh layout as the standalone file, with ``live=True``);
- ``/view?x0=&x1=&y0=&y1=``: the objects inside a viewport as JSON: all of them when they number at most
  ``visualize.max_points`` (exact points when zoomed in), else a seeded sample of that many over a
  density image of every one of them, re-aggregated for that viewport;
- ``/density.png?x0=&x1=&y0=&y1=``: that density image;
- ``/thumb?id=``: one object's thumbnail (PNG), read from the dataset it came from; a placeholder tile
  and a logged reason when the image cannot be read;
- ``/neighbours?id=&k=``: an object's nearest neighbours from the vector index;
- ``/find?id=``: where an object is on the map (its id, x, y, and a view width around it), 404 with the
  reason when no object of the map has that id (the page's find box);
- ``/atlas/<path>``: a file of the map's atlas (``/atlas/manifest.json``, ``/atlas/{z}/tiles.json``,
  ``/atlas/{z}/{tx}/{ty}.webp`` and ``.json``: :mod:`hyrax.visualize.atlas`), 404 when there is none;
- ``POST /selection``: the ids selected in the page, which :meth:`LiveMap.selected` returns to Python as
  a DataFrame;
- ``POST /label``: label the selection (or the given ids) 1 or 0 with an optional tag, into the results
  directory's labels table (``h.labels()``); answers the marks of every labelled object on the map;
- ``POST /rank``: re-rank every object from the labels (``h.rank()``), answering the top of the ranking
  and the suggested next objects to label.

Only its user can reach it: every request, GET and POST alike, must name the server by its loopback
address and port (``Host: 127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT``; a page of another site
whose name resolves to 127.0.0.1, DNS rebinding, is refused) and carry the session token of the address
the server prints (``?token=...``, as Jupyter does). The first visit sets it as a cookie (HttpOnly,
SameSite=Strict); the page passes it on in its own requests and image addresses, so that it also works
inside the notebook's frame, where a browser may withhold cookies. A POST must also come from the
page's own origin.

Standard library HTTP only: nothing to install on a login node, and the notebook front door starts the
same server in a background thread.
"""

from __future__ import annotations

import http.server
import json
import logging
import math
import secrets
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.visualize.access import SessionGate
from hyrax.visualize.export import atlas_manifest
from hyrax.visualize.mapdata import DENSITY_BINS, MapData, density_rgba, label_marks, map_frame
from hyrax.visualize.source import OWN, MapSource
from hyrax.visualize.stretch import png_bytes

logger = logging.getLogger(__name__)


class LiveMap:
    """A reduce_dimensions run served to the page a viewport at a time. It holds each object's map
    coordinates and sampling priority (12 bytes an object in 2-D) and reads ids, metadata, scores and
    images for the objects each request needs (:class:`~hyrax.visualize.source.MapSource`)."""

    def __init__(
        self,
        config: Mapping,
        reduce_run: Path,
        color: str | None = None,
        max_points: int = 50_000,
        stretch: str = "asinh",
        band: int | None = None,
        neighbours: int = 8,
        source: MapSource | None = None,
        color_scale: str = "auto",
    ):
        self.config, self.reduce_run, self.color = config, Path(reduce_run), color
        self.max_points, self.stretch, self.band, self.k = max_points, stretch, band, neighbours
        self.source = source or MapSource(config, reduce_run)
        self.source.check_color(color)
        self.x, self.y, self.z = self.source.x, self.source.y, self.source.z
        self.extent = self.source.extent()
        self.infer_run = self.source.infer_run
        # chosen once over every object, so that colours keep their meaning as the page zooms
        self.colour = self.source.colour_scale(color, color_scale)
        self._index = None
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._selected = np.empty(0, dtype=np.int64)  # map rows
        self._seq: int | None = None
        self.server: http.server.ThreadingHTTPServer | None = None
        # a new one per map served: whoever lacks it (another site's page, another user of the
        # machine) is refused, whatever route they ask for
        self.token = secrets.token_urlsafe(32)

    @property
    def total(self) -> int:
        return self.source.total

    # -- what the page asks ---------------------------------------------------------------------------

    def inside(self, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        return self.source.inside(x0, x1, y0, y1)

    def view(self, x0: float, x1: float, y0: float, y1: float, seed: int = 0) -> dict:
        """The page's data for a viewport: points (exact when few enough) and, when sampled, a density.
        Catalog columns keep their names; the map's own are namespaced (``map_x``...: :data:`OWN`)."""
        rows, in_view = self.source.sample(x0, x1, y0, y1, self.max_points)
        points: dict[str, list] = {}
        arrays = {}
        columns = self.source.columns_of(rows)
        if self.colour is not None:
            columns[OWN["colour"]] = self.colour.encode(columns[self.colour.column])
        for name, values in columns.items():
            values = np.asarray(values)
            if values.dtype.kind in "biuf":
                arrays[name] = _binary(values, "float64")
            else:
                points[name] = [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]
        points["object_id"] = self.source.ids(rows).tolist()
        arrays[OWN["x"]], arrays[OWN["y"]] = (
            _binary(self.x[rows], "float32"),
            _binary(self.y[rows], "float32"),
        )
        if self.z is not None:
            arrays[OWN["z"]] = _binary(self.z[rows], "float32")
        sampled = len(rows) < in_view
        return {
            "points": points,
            "arrays": arrays,
            "drawn": len(rows),
            "in_view": in_view,
            "total": self.total,
            "density": (
                self._density_source(x0, x1, y0, y1)
                if sampled
                else {"url": [], "x": [], "y": [], "w": [], "h": []}
            ),
        }

    def initial(self) -> MapData:
        """What the page shows before any zoom: the whole map (a sample over a density past max_points)."""
        x0, y0, x1, y1 = self.extent
        rows, _ = self.source.sample(x0, x1, y0, y1, self.max_points)
        ids = self.source.ids(rows)
        data = MapData(
            ids=ids,
            coordinates=self.source.coordinates(rows),
            columns=self.source.columns_of(rows),
            thumbnails=[self.thumbnail_url(i) for i in ids],
            total=self.total,
        )
        data.extent = self.extent
        if len(rows) < self.total:
            data.density_url = self._density_source(x0, x1, y0, y1)
        data.colour = self.colour  # the colour scale of the whole map, not of the sample
        data.marks = label_marks(self.source)
        manifest = atlas_manifest(self.reduce_run)
        if manifest is not None:  # the page asks /atlas/... for its tiles (hyrax.visualize.atlas)
            data.atlas = {"manifest": manifest, "base": "atlas/"}
        return data

    def thumbnail_url(self, object_id) -> str:
        """An object's thumbnail address, relative to the page, with the session token."""
        return "thumb?" + urllib.parse.urlencode({"id": str(object_id), "token": self.token})

    def _density_source(self, x0: float, x1: float, y0: float, y1: float) -> dict:
        query = urllib.parse.urlencode({"x0": x0, "x1": x1, "y0": y0, "y1": y1, "token": self.token})
        return {"url": [f"density.png?{query}"], "x": [x0], "y": [y0], "w": [x1 - x0], "h": [y1 - y0]}

    def density_png(self, x0: float, x1: float, y0: float, y1: float) -> bytes:
        counts = self.source.density((x0, y0, x1, y1), DENSITY_BINS)
        return png_bytes(density_rgba(counts)[::-1])  # image rows run top-down; y runs up

    def thumbnail_png(self, object_id: str) -> bytes:
        """One object's thumbnail: its map row through the map's id index, its image from its dataset
        (a placeholder tile and a logged reason when there is none)."""
        from hyrax.visualize.stretch import placeholder_png

        with self._lock:
            if object_id in self._thumbs:
                self._thumbs.move_to_end(object_id)
                return self._thumbs[object_id]
        try:
            row = int(self.source.rows_of([object_id])[0])
            if row < 0:
                raise LookupError(f"object id {object_id} is not on this map")
            picture = png_bytes(self.source.image(row, self.stretch, self.band), size=64)
        except Exception as error:  # a broken image is a placeholder tile and a logged reason
            logger.warning("no thumbnail for %s: %s", object_id, error)
            picture = placeholder_png()
        with self._lock:
            self._thumbs[object_id] = picture
            while len(self._thumbs) > 20_000:
                self._thumbs.popitem(last=False)
        return picture

    def find(self, object_id: str) -> dict:
        """Where an object is on the map, for the page's find box: its id, ``x``, ``y`` and the ``width``
        of a view around it (1/64 of the map's); LookupError when no object of the map has that id."""
        rows = self.rows_of([object_id])
        if not len(rows):
            raise LookupError(f"no object {object_id} in this map ({self.total:,} objects)")
        row = int(rows[0])
        x0, y0, x1, y1 = self.extent
        return {
            "object_id": str(object_id),
            "x": float(self.x[row]),
            "y": float(self.y[row]),
            "width": float(max(x1 - x0, y1 - y0)) / 64,
        }

    def neighbours(self, object_id: str, k: int | None = None) -> dict:
        """The object and its k nearest neighbours from the vector index of its inference run."""
        k = k or self.k
        if self._index is None:
            from hyrax.vector_db.connection import DatabaseConnection

            if self.infer_run is None:
                raise LookupError(f"{self.reduce_run} does not say which inference run it mapped")
            self._index = DatabaseConnection(self.config, self.infer_run)
        found = self._index.search_by_id(object_id, k + 1)
        ids = [str(i) for i in found[str(object_id)]]
        distances = found.distances[str(object_id)]
        return {
            "object_id": ids,
            "distance": [float(d) for d in distances],
            "thumbnail": [self.thumbnail_url(i) for i in ids],
        }

    # -- the selection, back in Python ----------------------------------------------------------------

    def select(self, object_ids=(), geometry: Mapping | None = None, seq: int | None = None) -> int:
        """Record the page's selection: a box or lasso (``geometry`` in data coordinates, as Bokeh sends
        it) selects every object inside it, drawn or not; otherwise the given ids. A selection older than
        the last one recorded (``seq``) is ignored. Returns how many objects are selected."""
        kind = (geometry or {}).get("type")
        rows = self.region(geometry) if kind in ("rect", "poly") else self.rows_of(object_ids)
        rows = rows.astype(np.int32) if self.total < 2**31 else rows  # 4 bytes a selected object
        with self._lock:
            if seq is not None and self._seq is not None and seq <= self._seq:
                return len(self._selected)
            self._seq, self._selected = seq, rows
        return len(rows)

    def rows_of(self, object_ids) -> np.ndarray:
        found = self.source.rows_of([str(i) for i in object_ids])
        return found[found >= 0]

    def region(self, geometry: Mapping) -> np.ndarray:
        """Rows inside a box (x0, x1, y0, y1) or a lasso polygon (x, y), in data coordinates."""
        if geometry["type"] == "rect":
            x0, x1 = sorted((float(geometry["x0"]), float(geometry["x1"])))
            y0, y1 = sorted((float(geometry["y0"]), float(geometry["y1"])))
            return self.inside(x0, x1, y0, y1)
        px, py = np.asarray(geometry["x"], dtype=float), np.asarray(geometry["y"], dtype=float)
        if len(px) < 3 or len(px) != len(py):
            raise ValueError(f"a lasso needs 3 or more (x, y) vertices, got {len(px)} and {len(py)}")
        rows = self.inside(px.min(), px.max(), py.min(), py.max())
        return rows[inside_polygon(self.x[rows], self.y[rows], px, py)]

    def selected(self):
        """The objects selected in the page as a DataFrame with their coordinates and metadata: every
        object inside a box or lasso (drawn on the map or not), or the tapped ones."""
        with self._lock:
            rows = np.asarray(self._selected, dtype=np.int64)
        return map_frame(self.source.ids(rows), self.source.coordinates(rows), self.source.columns_of(rows))

    # -- labels and ranking ----------------------------------------------------------------------------

    def label(self, payload: Mapping) -> dict:
        """Label the page's selection (``selection``: true; every object inside a box or lasso) or the
        given ``object_id`` list with ``label`` (1/0/None) and ``tag``; the marks of every labelled object."""
        from hyrax.verbs.discovery import LabelVerb

        if payload.get("selection"):
            with self._lock:
                rows = np.asarray(self._selected, dtype=np.int64)
            ids = self.source.ids(rows)
        else:
            ids = np.asarray([str(i) for i in payload.get("object_id") or []])
            unknown = ids[self.source.rows_of(ids) < 0] if len(ids) else ids
            if len(unknown):
                raise ValueError(f"ids not on this map: {', '.join(unknown[:5])}")
        if not len(ids):
            raise ValueError("nothing is selected: select objects (lasso, box or tap) before labelling them")
        count = LabelVerb(self.config).run(
            ids, payload.get("label"), payload.get("tag") or None, allow_unknown=True
        )
        return {
            "labelled": count,
            "total": len(self.source.labels().latest()),
            "marks": label_marks(self.source),
        }

    def rank(self, top: int = 24, suggest: int = 12) -> dict:
        """Re-rank every object of the map's inference run from the labels: the top and the suggestions."""
        from hyrax.verbs.discovery import ranked_frame, ranked_run, suggested_frame

        if self.infer_run is None:
            raise LookupError(f"{self.reduce_run} does not say which inference run it mapped")
        run, latest = ranked_run(self.config, self.infer_run)  # one ranking pass for both lists
        return {
            "top": self._entries(ranked_frame(run, latest, top), "combined"),
            "suggest": self._entries(suggested_frame(run, latest, suggest), "acquisition"),
            "labelled": int(latest["label"].notna().sum()),
        }

    def _entries(self, frame, score: str) -> list[dict]:
        """Rows of a ranking as the page's tiles: id, score, label (1/0/None) and thumbnail address."""
        import pandas as pd

        labels = [None if pd.isna(value) else int(value) for value in frame["label"].astype(object)]
        return [
            {"object_id": str(i), score: float(v), "label": label, "thumbnail": self.thumbnail_url(i)}
            for i, v, label in zip(frame["object_id"], frame[score], labels, strict=True)
        ]

    # -- the server --------------------------------------------------------------------------------

    def start(self, port: int = 0, page: str | None = None) -> str:
        """Serve on 127.0.0.1:port (0: any free port) in a background thread; return the address to
        open, with the session token (:attr:`url`)."""
        if self.server is None:
            self.server = make_server(self, port, page)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    @property
    def address(self) -> str:
        """Where the server is, without the token: ``http://127.0.0.1:PORT/`` ("" when not serving)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/" if self.server else ""

    @property
    def url(self) -> str:
        """The address to open: the page with the session token, ``http://127.0.0.1:PORT/?token=...``."""
        return f"{self.address}?token={self.token}" if self.server else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def page(self, title: str = "Hyrax latent space") -> str:
        from hyrax.visualize.page import build_layout, page_html

        return page_html(build_layout(self.initial(), self.color, title, live=True), title)


def inside_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Which points (x, y) lie inside the polygon (px, py): even-odd rule, one pass per edge."""
    inside = np.zeros(len(x), dtype=bool)
    for i in range(len(px)):
        xi, yi, xj, yj = px[i], py[i], px[i - 1], py[i - 1]
        if yi == yj:
            continue  # a horizontal edge crosses no horizontal ray
        crosses = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
        inside ^= crosses
    return inside


#: What each POST route takes (said back with a bad request).
USAGE = {
    "/selection": "a selection is {'object_id': [...]} or {'geometry': {...}}",
    "/label": "a label is {'selection': true} or {'object_id': [...]}, with 'label' (1 or 0) and 'tag'",
    "/rank": "a re-ranking takes an empty JSON object {}",
}

#: The largest selection body accepted (ids of ~1M objects; a region is a few numbers).
MAX_SELECTION_BYTES = 64 * 2**20


def make_server(live: LiveMap, port: int, page: str | None = None) -> http.server.ThreadingHTTPServer:
    """The HTTP server of a LiveMap (see the module documentation for its routes)."""
    handler = type("Handler", (MapRequestHandler,), {"live": live, "html": (page or live.page()).encode()})
    http.server.ThreadingHTTPServer.daemon_threads = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    handler.gate = SessionGate(live.token, server.server_address[1])  # the port taken, when 0 asked any
    return server


class MapRequestHandler(http.server.BaseHTTPRequestHandler):
    """Answers the page's requests from ``live``; ``html`` is the page; ``gate`` says who may ask (a
    subclass per server sets all three)."""

    live: LiveMap
    html: bytes
    gate: SessionGate

    def do_GET(self):  # noqa: N802 - the http.server interface
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        live = self.live
        if not self._admitted(query, page=url.path in ("/", "/index.html")):
            return
        try:
            if url.path in ("/", "/index.html"):
                self._send(self.html, "text/html; charset=utf-8")
            elif url.path == "/view":
                self._json(live.view(*_box(query)))
            elif url.path == "/density.png":
                self._send(live.density_png(*_box(query)), "image/png")
            elif url.path == "/thumb":
                self._send(live.thumbnail_png(query["id"]), "image/png", cache=True)
            elif url.path == "/neighbours":
                self._json(live.neighbours(query["id"], int(query.get("k", 0)) or None))
            elif url.path == "/find":
                try:
                    self._json(live.find(query["id"]))
                except LookupError as missing:
                    self._json({"error": str(missing)}, status=404)
            elif url.path.startswith("/atlas/"):  # the atlas's files (hyrax.visualize.atlas)
                self._atlas_file(url.path[len("/atlas/") :])
            else:
                self.send_error(404, f"no page {url.path}")
        except (KeyError, ValueError) as error:  # JSON, so that the page can show the reason
            self._json({"error": f"bad request {self.path}: {error}"}, status=400)
        except Exception as error:  # the page shows the reason; the server keeps serving
            logger.warning("map server: %s failed: %s", self.path, error)
            self._json({"error": str(error)}, status=500)

    def _atlas_file(self, relative: str) -> None:
        """A file of the map's atlas, as the folder holds it; 404 with the reason when there is none."""
        from hyrax.visualize.atlas import served_file

        try:
            body, kind = served_file(self.live.reduce_run, relative)
        except FileNotFoundError as error:
            self._json({"error": str(error)}, status=404)
            return
        self._send(body, kind, cache=relative != "manifest.json")

    def do_POST(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if not self._admitted(dict(urllib.parse.parse_qsl(url.query))):
            return
        if path not in USAGE:
            self.send_error(404)
            return
        refused = self._refusal()
        if refused is not None:
            self._json({"error": refused[1]}, status=refused[0])
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise TypeError(f"the body is a JSON {type(payload).__name__}, not an object")
            if path == "/rank":
                answer = self._rank()
            elif path == "/label":
                answer = self.live.label(payload)
            else:
                answer = {
                    "selected": self.live.select(
                        payload.get("object_id", []), payload.get("geometry"), payload.get("seq")
                    )
                }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            self._json({"error": f"{USAGE[path]}: {error}"}, status=400)
        except Exception as error:  # noqa: BLE001 - the page shows the reason; the server keeps serving
            logger.warning("map server: %s failed: %s", self.path, error)
            self._json({"error": str(error)}, status=500)
        else:
            self._json(answer)

    def _rank(self) -> dict:
        """Re-ranking fails for reasons of the data, not of the request: said as a 500 with the reason."""
        try:
            return self.live.rank()
        except Exception as error:
            raise RuntimeError(f"re-ranking failed: {error}") from error

    def _admitted(self, query: Mapping[str, str], page: bool = False) -> bool:
        """Whether this request may be answered (:class:`~hyrax.visualize.access.SessionGate`); a refusal
        is sent here, as text for the page and JSON for the page's requests."""
        refused = self.gate.refusal(self.headers, query)
        if refused is not None:
            status, reason = refused
            if page:
                self._send(reason.encode(), "text/plain; charset=utf-8", status=status)
            else:
                self._json({"error": reason}, status=status)
            self.close_connection = True
            return False
        # the first visit's token becomes a cookie, so that a reload without it still works
        self._new_cookie = self.gate.token_source(self.headers, query) == "query" and page
        return True

    def _refusal(self) -> tuple[int, str] | None:
        """Why this admitted POST is refused (status, reason), or None. The page posts JSON (a plain form
        of another site cannot), with a sane Content-Length; its origin was checked on admission."""
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return 415, "selections and labels are sent as application/json"
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return 411, f"Content-Length must be a whole number of bytes, got {length!r}"
        if int(length) > MAX_SELECTION_BYTES:
            return (
                413,
                f"a selection is at most {MAX_SELECTION_BYTES:,} bytes; this one says {int(length):,}",
            )
        return None

    def _json(self, payload: dict, status: int = 200) -> None:
        self._send(json.dumps(payload).encode(), "application/json", status=status)

    def _send(self, body: bytes, kind: str, status: int = 200, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "private, max-age=3600" if cache else "no-store")
        self.send_header("Referrer-Policy", "no-referrer")  # addresses carry the token
        self.send_header("X-Content-Type-Options", "nosniff")
        if getattr(self, "_new_cookie", False):
            self.send_header("Set-Cookie", self.gate.set_cookie())
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _box(query: Mapping[str, str]) -> tuple[float, float, float, float]:
    box = tuple(float(query[name]) for name in ("x0", "x1", "y0", "y1"))
    if not all(math.isfinite(v) for v in box) or box[0] >= box[1] or box[2] >= box[3]:
        raise ValueError(f"the viewport x0 < x1, y0 < y1 was {box}")
    return box


def _binary(values: np.ndarray, dtype: str) -> dict:
    """A numeric column as base64 little-endian bytes: a tenth of the size of JSON numbers and no
    parsing; NaN survives (JSON has none). The page decodes it into a typed array."""
    import base64

    data = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return {"dtype": dtype, "data": base64.b64encode(data).decode()}
