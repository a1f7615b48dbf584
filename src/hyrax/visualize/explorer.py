"""The latent-space map: points of a reduce_dimensions run, coloured by metadata or outlier score, with
thumbnails on hover, a lasso/box selection that fills a table and an image grid, a click that shows an
object's nearest neighbours, and CSV export. Everything runs in the page (Bokeh, resources inline), so
the same page works in a notebook, from `hyrax visualize` on 127.0.0.1, and as a standalone file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.errors import ConfigError
from hyrax.plugins import did_you_mean
from hyrax.visualize.source import SOURCE_FILE, MapSource, infer_provider_of, infer_run_of, thumbnail_rgb

__all__ = [
    "MapData",
    "MapView",
    "gather",
    "infer_provider_of",
    "infer_run_of",
    "thumbnail_rgb",
    "SOURCE_FILE",
]

logger = logging.getLogger(__name__)

#: How points look, selected and not, in the 2-D and the 3-D views.
POINT_STYLE = {
    "line_color": None,
    "alpha": 0.8,
    "selection_fill_color": "orange",
    "nonselection_fill_alpha": 0.25,
}
#: Bokeh's renderer for the points: "webgl" (the GPU; software GL in a headless browser) or "canvas".
OUTPUT_BACKEND = "webgl"


@dataclass
class MapData:
    """What the page shows: one entry per displayed object."""

    ids: np.ndarray
    coordinates: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    thumbnails: list[str] = field(default_factory=list)
    neighbours: np.ndarray | None = None
    total: int = 0
    #: Density of every object (not only the drawn sample): counts on a grid, and its extent.
    density: np.ndarray | None = None
    extent: tuple[float, float, float, float] | None = None
    #: Live app only: the density image's source ({url, x, y, w, h}), re-aggregated by the server on zoom.
    density_url: dict | None = None
    #: Colour scale of each column over every object (default: over the drawn ones).
    color_range: dict[str, tuple[float, float] | None] = field(default_factory=dict)

    def to_dataframe(self):
        import pandas as pd

        frame = pd.DataFrame(
            {"object_id": self.ids, "x": self.coordinates[:, 0], "y": self.coordinates[:, 1]}
        )
        for name, values in self.columns.items():
            frame[name] = values
        return frame


def gather(
    config: Mapping,
    reduce_run: Path,
    max_points: int = 50_000,
    max_thumbnails: int = 2000,
    stretch: str = "asinh",
    band: int | None = None,
    neighbours: int = 8,
    seed: int = 0,
    thumbnails: bool = True,
    with_density: bool = True,
    source: MapSource | None = None,
    color: str | None = None,
) -> MapData:
    """Coordinates, metadata, outlier scores, thumbnails and neighbours of the objects the standalone
    page draws (``max_points`` 0: every object; ``thumbnails`` False or ``neighbours`` 0: leave those
    out); past ``max_points``, a sample drawn over a density of every object."""
    source = source or MapSource(config, reduce_run)
    extent = source.extent()
    x0, y0, x1, y1 = extent
    limit = max_points if max_points > 0 else source.total
    rows, _ = source.sample(x0, x1, y0, y1, limit)
    ids = source.ids(rows)
    data = MapData(ids=ids, coordinates=source.coordinates(rows), total=source.total)
    if with_density and len(rows) < source.total:
        data.density, data.extent = source.density(extent, DENSITY_BINS), extent
    data.columns.update(source.columns_of(rows))
    if color is not None and len(rows) < source.total:  # the colour scale of every object
        data.color_range = {color: source.color_range(color)}
    if thumbnails and source.provider() is not None:
        data.thumbnails = _thumbnails(source, rows, ids, max_thumbnails, stretch, band)
    if neighbours > 0 and source.infer_run is not None:
        data.neighbours = _neighbours(source.infer_run, rows, neighbours)
    return data


#: Density image resolution (cells per side), for the standalone page and the live app's viewports.
DENSITY_BINS = 400


def density_rgba(counts: np.ndarray) -> np.ndarray:
    """Log-scaled counts as a grey-blue (height, width, 4) uint8 image; empty cells transparent."""
    scaled = np.log1p(counts) / max(np.log1p(counts.max()), 1e-9)
    rgba = np.zeros((*counts.shape, 4), dtype=np.uint8)
    rgba[..., 0] = (40 + 60 * scaled).astype(np.uint8)
    rgba[..., 1] = (60 + 90 * scaled).astype(np.uint8)
    rgba[..., 2] = (120 + 135 * scaled).astype(np.uint8)
    rgba[..., 3] = np.where(counts > 0, (60 + 195 * scaled), 0).astype(np.uint8)
    return rgba


def _thumbnails(source: MapSource, rows, ids, limit: int, how: str, band: int | None) -> list[str]:
    from hyrax.visualize.stretch import PLACEHOLDER, png_data_uri

    pictures = []
    for position, row in enumerate(rows):
        if position >= limit:
            pictures.append(PLACEHOLDER)
            continue
        try:
            pictures.append(png_data_uri(source.image(int(row), how, band)))
        except Exception as error:  # a broken image is a placeholder tile and a logged reason, never a crash
            logger.warning("no thumbnail for %s: %s", ids[position], error)
            pictures.append(PLACEHOLDER)
    return pictures


def _neighbours(infer_run: Path, rows: np.ndarray, k: int) -> np.ndarray | None:
    """Nearest neighbours among the drawn objects (map row r is row r of the inference results)."""
    import faiss

    from hyrax.results.store import ResultDataset

    try:
        vectors = (
            ResultDataset(data_location=infer_run).take(rows)[1].reshape(len(rows), -1).astype(np.float32)
        )
    except Exception as error:  # neighbours are a courtesy of the page
        logger.warning("the map shows no neighbours: %s", error)
        return None
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(vectors, min(k + 1, len(rows)))
    return found[:, 1:]


def check_color(data: MapData, color: str | None) -> str | None:
    if color is None or color in data.columns:
        return color
    raise ConfigError(
        f'visualize.color_column = "{color}" is not a column of the map.{did_you_mean(color, data.columns)} '
        f"Columns: {', '.join(data.columns) or '(none: the data has no metadata)'}."
    )


def build_layout(
    data: MapData, color: str | None = None, title: str = "Hyrax latent space", live: bool = False
) -> Any:
    """The Bokeh layout of the map (see the module documentation). ``live``: the page talks to the
    :mod:`~hyrax.visualize.live` server (re-aggregation on zoom, thumbnails, neighbours, selection)."""
    from hyrax.plugins import optional_import

    optional_import("bokeh", "visualize", "The latent-space map")
    from bokeh.layouts import column, row
    from bokeh.models import (
        Button,
        ColorBar,
        ColumnDataSource,
        CustomJS,
        DataTable,
        Div,
        HoverTool,
        TableColumn,
    )
    from bokeh.plotting import figure
    from bokeh.transform import linear_cmap

    color = check_color(data, color)
    # numbers as numpy arrays: Bokeh sends them as binary typed arrays, not JSON lists
    columns = {
        name: (
            np.asarray(values, dtype=np.float64)
            if np.asarray(values).dtype.kind in "biuf"
            else np.asarray(values).astype(str).tolist()
        )
        for name, values in data.columns.items()
        if np.asarray(values).dtype.kind in "biufUSO"
    }
    points_data = {
        "x": np.asarray(data.coordinates[:, 0], dtype=np.float32),
        "y": np.asarray(data.coordinates[:, 1], dtype=np.float32),
        "object_id": data.ids.astype(str).tolist(),
        "thumbnail": data.thumbnails or [""] * len(data.ids),
        **columns,
    }
    three_d = data.coordinates.shape[1] >= 3
    if three_d:  # a turnable projection of the first three components, in a second plot
        points_data["z"] = np.asarray(data.coordinates[:, 2], dtype=np.float32)
        points_data["px"], points_data["py"] = project(data.coordinates[:, :3], *VIEW_ANGLES)
    if not live:  # the live page asks the vector index instead
        points_data["neighbours"] = (
            data.neighbours.tolist() if data.neighbours is not None else [[] for _ in data.ids]
        )
    source = ColumnDataSource(points_data, name="points")
    ranges = {}
    if live and data.extent is not None:  # fixed ranges: the server answers for exactly this viewport
        x0, y0, x1, y1 = data.extent
        ranges = {"x_range": (x0, x1), "y_range": (y0, y1)}
    plot = figure(
        title=f"{title}: {len(data.ids):,} of {data.total:,} objects",
        width=700,
        height=600,
        tools="pan,wheel_zoom,box_select,lasso_select,tap,reset,save",
        output_backend=OUTPUT_BACKEND,
        **ranges,
    )
    densities = None
    if live:  # the server re-aggregates the density of every object for each viewport
        empty = {"url": [], "x": [], "y": [], "w": [], "h": []}
        densities = ColumnDataSource(data.density_url or empty, name="density_source")
        plot.image_url(url="url", x="x", y="y", w="w", h="h", anchor="bottom_left", source=densities)
        if data.density_url:
            plot.title.text += " (density of all; points: a sample)"
    elif data.density is not None:  # every object as density; the drawn points are a sample of them
        x0, y0, x1, y1 = data.extent
        packed = density_rgba(data.density).view(np.uint32).reshape(data.density.shape)
        plot.image_rgba(image=[packed], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0, name="density")
        plot.title.text += " (density of all; points: a sample)"
    fill = "#1f77b4"
    if color is not None:
        values = np.asarray(data.columns[color], dtype=float)
        finite = values[np.isfinite(values)]
        low, high = data.color_range.get(color) or (
            (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        )
        mapper = linear_cmap(color, "Viridis256", low, high)
        fill = mapper
    points = plot.scatter("x", "y", source=source, size=6, fill_color=fill, **POINT_STYLE)
    if color is not None:
        plot.add_layout(ColorBar(color_mapper=mapper["transform"], title=color), "right")
    plot.add_tools(
        HoverTool(
            renderers=[points],
            tooltips='<div><img src="@thumbnail" width="64" height="64"><br>@object_id</div>',
        )
    )
    selected = ColumnDataSource({"object_id": [], **{name: [] for name in columns}})
    table = DataTable(
        source=selected,
        width=560,
        height=260,
        columns=[TableColumn(field="object_id", title="object_id")]
        + [TableColumn(field=n, title=n) for n in columns],
    )
    grid = Div(text="<i>Select objects with the lasso or box tool.</i>", width=560, name="selection_grid")
    near = Div(text="<i>Click an object to see its nearest neighbours.</i>", width=560, name="neighbour_grid")
    inside = Div(text="", width=560, name="selection_count")
    names = list(columns)
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args={"source": source, "selected": selected, "grid": grid, "names": names, "live": live},
            code=ESCAPE_JS
            + """
        const rows = source.selected.indices;
        const data = source.data;
        const out = {object_id: rows.map(i => data.object_id[i])};
        for (const name of names) { out[name] = rows.map(i => data[name][i]); }
        selected.data = out;
        if (live) {  // the selection, back in Python: LiveMap.selected() / MapView.selected()
            window._hyrax_seq = (window._hyrax_seq || 0) + 1;
            fetch('selection', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                body: JSON.stringify({object_id: out.object_id, seq: window._hyrax_seq})});
        }
        grid.text = '<b>' + rows.length + ' selected</b><br>' + rows.slice(0, 60).map(
            i => '<img class="hyrax-thumb" title="' + esc(data.object_id[i]) + '" src="' + esc(data.thumbnail[i]) + '" width="64" height="64">').join('');
    """,
        ),
    )
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args={"source": source, "near": near, "live": live},
            code=ESCAPE_JS
            + """
        const rows = source.selected.indices;
        if (rows.length !== 1) { return; }
        const data = source.data;
        const i = rows[0];
        const tile = (src, id) => '<figure style="display:inline-block;margin:2px"><img class="hyrax-neighbour" src="' + esc(src) +
            '" width="64" height="64"><figcaption style="font-size:9px">' + esc(id) + '</figcaption></figure>';
        const title = '<b>Nearest neighbours of ' + esc(data.object_id[i]) + '</b><br>';
        if (!live) {
            near.text = title + [i].concat(data.neighbours[i]).map(j => tile(data.thumbnail[j], data.object_id[j])).join('');
            return;
        }
        near.text = title + '<i>searching the vector index ...</i>';
        fetch('neighbours?id=' + encodeURIComponent(data.object_id[i])).then(r => r.json()).then(found => {
            near.text = found.error ? title + '<i>' + esc(found.error) + '</i>'
                : title + found.object_id.map((id, j) => tile(found.thumbnail[j], id)).join('');
        });
    """,
        ),
    )
    turn = _turnable_view(source, fill, title) if three_d else None
    if live:
        _follow_viewport(plot, source, densities, title, turn)
        _select_regions(plot, source, inside)
    download = Button(label="Download selection as CSV", width=220)
    download.js_on_event(
        "button_click",
        CustomJS(
            args={"selected": selected, "names": ["object_id"] + names},
            code="""
        const data = selected.data;
        // RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
        const field = v => { const s = String(v); return /[",\\r\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
        const lines = [names.map(field).join(',')];
        for (let r = 0; r < data.object_id.length; r++) { lines.push(names.map(n => field(data[n][r])).join(',')); }
        const blob = new Blob([lines.join('\\n')], {type: 'text/csv'});
        const link = document.createElement('a');
        link.href = URL.createObjectURL(blob);
        link.download = 'hyrax_selection.csv';
        link.click();
    """,
        ),
    )
    side = [table, download, inside, grid, near] if live else [table, download, grid, near]
    return row(column(plot, *turn) if turn else plot, column(*side))


#: Escapes a value for HTML (ids, metadata and server messages are data, never markup); prepended to
#: every page script that builds HTML.
ESCAPE_JS = (
    "const esc = s => String(s).replace(/[&<>\"']/g, "
    "c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '\"': '&quot;', \"'\": '&#39;'})[c]);\n"
)

#: Initial azimuth and elevation (degrees) of the 3-D view.
VIEW_ANGLES = (30.0, 20.0)

#: JavaScript: ``data.px, data.py`` = the 3-D points ``data.x, data.y, data.z`` seen from ``az``, ``el``
#: (the same formula as :func:`project`).
PROJECT_JS = """
function project(data, az, el) {
    const n = data.x.length, [a, e] = [az * Math.PI / 180, el * Math.PI / 180];
    const centre = [data.x, data.y, data.z].map(c => { let s = 0; for (let i = 0; i < n; i++) s += c[i]; return n ? s / n : 0; });
    const px = new Float32Array(n), py = new Float32Array(n);
    for (let i = 0; i < n; i++) {
        const [X, Y, Z] = [data.x[i] - centre[0], data.y[i] - centre[1], data.z[i] - centre[2]];
        const [u, v] = [X * Math.cos(a) + Y * Math.sin(a), -X * Math.sin(a) + Y * Math.cos(a)];
        px[i] = u; py[i] = Z * Math.cos(e) - v * Math.sin(e);
    }
    data.px = px; data.py = py;
}
"""


def project(xyz: np.ndarray, azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray]:
    """2-D screen coordinates of 3-D points turned by ``azimuth`` about z, seen from ``elevation``."""
    centred = np.asarray(xyz, dtype=np.float64) - np.asarray(xyz, dtype=np.float64).mean(axis=0)
    a, e = np.radians(azimuth), np.radians(elevation)
    u = centred[:, 0] * np.cos(a) + centred[:, 1] * np.sin(a)
    v = -centred[:, 0] * np.sin(a) + centred[:, 1] * np.cos(a)
    return u.astype(np.float32), (centred[:, 2] * np.cos(e) - v * np.sin(e)).astype(np.float32)


def _turnable_view(source, fill, title: str) -> tuple:
    """The 3-D map: the first three components projected, turned with two sliders. It shares the points'
    source, so a lasso here selects the same objects (and fills the same table and images)."""
    from bokeh.models import CustomJS, Slider
    from bokeh.plotting import figure

    view = figure(
        title=f"{title} in 3-D (components 1-3): turn it with the sliders",
        width=700,
        height=500,
        tools="pan,wheel_zoom,box_select,lasso_select,tap,reset",
        output_backend=OUTPUT_BACKEND,
        match_aspect=True,
        name="map_3d",
    )
    view.scatter("px", "py", source=source, size=5, fill_color=fill, **POINT_STYLE)
    azimuth = Slider(start=0, end=360, step=5, value=VIEW_ANGLES[0], title="azimuth (degrees)", width=340)
    elevation = Slider(
        start=-90, end=90, step=5, value=VIEW_ANGLES[1], title="elevation (degrees)", width=340
    )
    turn = CustomJS(
        args={"source": source, "azimuth": azimuth, "elevation": elevation},
        code=PROJECT_JS + "project(source.data, azimuth.value, elevation.value); source.change.emit();",
    )
    azimuth.js_on_change("value", turn)
    elevation.js_on_change("value", turn)
    return view, azimuth, elevation


def _select_regions(plot, source, inside) -> None:
    """Live page: a box or lasso on the 2-D map selects, in Python, every object inside it (drawn or
    not). Bokeh reports the region after it selected the drawn points, so this request comes last."""
    from bokeh.models import CustomJS

    plot.js_on_event(
        "selectiongeometry",
        CustomJS(
            args={"source": source, "inside": inside},
            code=ESCAPE_JS
            + """
        const g = cb_obj.geometry;
        if (!cb_obj.final || (g.type !== 'rect' && g.type !== 'poly')) { return; }
        const geometry = g.type === 'rect' ? {type: 'rect', x0: g.x0, x1: g.x1, y0: g.y0, y1: g.y1}
                                           : {type: 'poly', x: Array.from(g.x), y: Array.from(g.y)};
        window._hyrax_seq = (window._hyrax_seq || 0) + 1;
        fetch('selection', {method: 'POST', headers: {'Content-Type': 'application/json'},
                            body: JSON.stringify({geometry: geometry, seq: window._hyrax_seq})})
            .then(r => r.json()).then(answer => {
                if (answer.error) { inside.text = '<i>' + esc(answer.error) + '</i>'; return; }
                inside.text = '<b>' + answer.selected.toLocaleString('en') + ' objects inside the selection</b> ' +
                    '(all of them, drawn or not: <code>view.selected()</code> in Python)';
                window._hyrax_region = answer.selected;
            });
    """,
        ),
    )


def _follow_viewport(plot, source, densities, title: str, turn: tuple | None = None) -> None:
    """Live page: after each pan or zoom (debounced), fetch the viewport's points and density."""
    from bokeh.models import CustomJS

    callback = CustomJS(
        args={
            "plot": plot,
            "source": source,
            "densities": densities,
            "title": title,
            "angles": list(turn[1:]) if turn else [],
        },
        code=PROJECT_JS
        + """
        clearTimeout(window._hyrax_timer);
        window._hyrax_timer = setTimeout(() => {
            const q = new URLSearchParams({x0: plot.x_range.start, x1: plot.x_range.end,
                                           y0: plot.y_range.start, y1: plot.y_range.end});
            fetch('view?' + q).then(r => r.json()).then(view => {
                if (view.error) { return; }
                const data = view.points;
                for (const [name, column] of Object.entries(view.arrays)) {
                    const bytes = Uint8Array.from(atob(column.data), c => c.charCodeAt(0));
                    data[name] = column.dtype === 'float32' ? new Float32Array(bytes.buffer) : new Float64Array(bytes.buffer);
                }
                data.thumbnail = data.object_id.map(id => 'thumb?id=' + encodeURIComponent(id));
                if (data.z) { project(data, angles[0].value, angles[1].value); }
                source.selected.indices = [];
                source.data = data;
                densities.data = view.density;
                const drawn = view.drawn;
                plot.title.text = title + ': ' + drawn.toLocaleString('en') + ' of ' + view.in_view.toLocaleString('en') +
                    ' objects in view (' + view.total.toLocaleString('en') + ' in all)' +
                    (drawn < view.in_view ? ' (density of all; points: a sample)' : '');
                window._hyrax_views = (window._hyrax_views || 0) + 1;
            });
        }, 200);
    """,
    )
    for axis in (plot.x_range, plot.y_range):
        axis.js_on_change("start", callback)
        axis.js_on_change("end", callback)


def page_html(layout: Any, title: str = "Hyrax latent space") -> str:
    """A standalone page: Bokeh's JavaScript inline, so it opens with no server and no network."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(layout, INLINE, title)


class MapView:
    """The map, from a notebook or the command line (``h.visualize()`` returns one).

    In Jupyter it displays itself as the live app, served from the kernel on 127.0.0.1 (with
    ``visualize.notebook = "static"``: the standalone page, for a browser that cannot reach the kernel's
    machine); :meth:`selected` returns what was selected in it as a DataFrame. :meth:`save` writes the
    standalone page; :meth:`to_dataframe` gives the objects drawn on it.
    """

    def __init__(self, config: Mapping, reduce_run: Path, color: str | None = None):
        from hyrax.config import get_setting

        self.config, self.reduce_run = config, Path(reduce_run)
        settings = config["visualize"]
        self._options = {
            "max_points": int(settings["max_points"]),
            "stretch": settings["stretch"],
            "band": get_setting(config, "visualize.band"),
        }
        self._max_thumbnails = int(settings["max_thumbnails"])
        self._notebook = get_setting(config, "visualize.notebook") or "live"
        self._data = self._html = self._live = None
        self.source = MapSource(config, self.reduce_run)
        # A wrong column is an error now, not when the page is drawn.
        self.color = self.source.check_color(color)

    @property
    def data(self) -> MapData:
        """What the standalone page shows (a sample of at most visualize.max_points objects)."""
        if self._data is None:
            self._data = gather(
                self.config,
                self.reduce_run,
                max_thumbnails=self._max_thumbnails,
                source=self.source,
                color=self.color,
                **self._options,
            )
        return self._data

    @property
    def html(self) -> str:
        """The standalone page: opens with no server and no network."""
        if self._html is None:
            self._html = page_html(build_layout(self.data, self.color))
        return self._html

    @property
    def live(self):
        """The live app (:class:`~hyrax.visualize.live.LiveMap`), created on first use."""
        if self._live is None:
            from hyrax.visualize.live import LiveMap

            self._live = LiveMap(
                self.config, self.reduce_run, self.color, source=self.source, **self._options
            )
        return self._live

    def serve(self, port: int = 0) -> str:
        """Serve the live app on 127.0.0.1:port (0: any free port) in the background; its address."""
        return self.live.start(port)

    def selected(self):
        """The objects selected (lasso, box or tap) in the live app, with their metadata."""
        if self._live is None or self._live.server is None:
            raise RuntimeError(
                "Nothing is selected yet: display the map in a notebook cell (or call view.serve() and open "
                "the address it returns), select objects with the lasso or box tool, then call selected()."
            )
        return self._live.selected()

    def to_dataframe(self):
        return self.data.to_dataframe()

    def save(self, path: str | Path) -> Path:
        from hyrax.results.run_dir import write_text_atomic

        path = Path(path)
        write_text_atomic(path, self.html)
        return path

    def _repr_html_(self) -> str:
        import html

        if self._notebook == "live":
            url = self.serve()
            return f'<iframe src="{url}" style="width:100%;height:1100px;border:0"></iframe>'
        return (
            f'<iframe srcdoc="{html.escape(self.html)}" style="width:100%;height:1100px;border:0"></iframe>'
        )


def require_reduce_run(config: Mapping, explicit=None) -> Path:
    from hyrax.config import get_setting
    from hyrax.errors import ResultsError
    from hyrax.results.run_dir import resolve_run

    try:
        return resolve_run(
            config, "reduce_dimensions", explicit or get_setting(config, "visualize.input_dir")
        )
    except ResultsError as error:
        raise ResultsError(
            f"{error} The map shows a reduce_dimensions run: run `hyrax reduce_dimensions` (after `hyrax infer`) first."
        ) from None
