"""The map's page: a Bokeh layout of the points (coloured by metadata or outlier score), thumbnails on
hover, a lasso/box selection that fills a table and an image grid, a click that shows an object's nearest
neighbours, CSV export, and a turnable 3-D view. Everything runs in the page (Bokeh, resources inline),
so the same page works in a notebook, from `hyrax visualize` on 127.0.0.1, and as a standalone file.

The page's JavaScript is in ``hyrax/visualize/js/*.js`` (package data): each file defines functions, and
each Bokeh callback is those files followed by one call (:func:`script`).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np

from hyrax.visualize.colours import ColourScale, choose
from hyrax.visualize.mapdata import VIEW_ANGLES, MapData, check_color, density_rgba, project
from hyrax.visualize.source import OWN

#: How points look, selected and not, in the 2-D and the 3-D views.
POINT_STYLE = {
    "line_color": None,
    "alpha": 0.8,
    "selection_fill_color": "orange",
    "nonselection_fill_alpha": 0.25,
}
#: Bokeh's renderer for the points: "webgl" (the GPU; software GL in a headless browser) or "canvas".
OUTPUT_BACKEND = "webgl"
#: The map's tools, 2-D and 3-D.
TOOLS = "pan,wheel_zoom,box_select,lasso_select,tap,reset"
SAMPLED = " (density of all; points: a sample)"
#: The map's frame (pixels, square) when it has an atlas.
ATLAS_FRAME_PX = 560


@functools.cache
def javascript(name: str) -> str:
    """The text of ``js/<name>.js``, shipped with the package."""
    return (resources.files("hyrax.visualize") / "js" / f"{name}.js").read_text(encoding="utf-8")


def script(files: tuple[str, ...], call: str) -> str:
    """A Bokeh callback's code: the functions of these JavaScript files, then ``call``."""
    return "\n".join(javascript(name) for name in files) + "\n" + call + ";\n"


def build_layout(
    data: MapData,
    color: str | None = None,
    title: str = "Hyrax latent space",
    live: bool = False,
    color_scale: str = "auto",
) -> Any:
    """The Bokeh layout of the map (see the module documentation). ``live``: the page talks to the
    :mod:`~hyrax.visualize.live` server (re-aggregation on zoom, thumbnails, neighbours, selection).
    ``color``: the column that colours the points, on ``data.colour`` (chosen over every object) or,
    without one, on ``color_scale`` over the drawn objects (:mod:`hyrax.visualize.colours`)."""
    from hyrax.plugins import optional_import

    optional_import("bokeh", "visualize", "The latent-space map")
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, HoverTool

    color = check_color(data, color)
    scale = colour_scale(data, color, color_scale)
    columns = page_columns(data)
    source = ColumnDataSource(points_data(data, columns, live, scale), name="points")
    plot = _figure(data, title, live)
    densities = _density_layer(plot, data, live)
    atlas = _atlas_layers(plot) if data.atlas else None  # under the points: a selected one shows on it
    fill = _fill(plot, scale)
    points = plot.scatter(OWN["x"], OWN["y"], source=source, size=6, fill_color=fill, **POINT_STYLE)
    plot.add_tools(
        HoverTool(
            renderers=[points],
            tooltips=f'<div><img src="@{OWN["thumbnail"]}" width="64" height="64"><br>@object_id</div>',
        )
    )
    _labelled_marks(plot, data)
    exported = json.dumps(data.exported) if data.exported else ""
    side = _side_panel(source, list(columns), live, exported)
    turn = _turnable_view(source, fill, title) if data.coordinates.shape[1] >= 3 else None
    if live:
        _follow_viewport(plot, source, densities, title, turn)
        _select_regions(plot, side["inside"])
    if exported:
        _follow_export(plot, source, title, exported)
    if atlas:
        _follow_atlas(plot, json.dumps(data.atlas), atlas, source, [points], exported, live)
    panel = [side[k] for k in ("table", "download", "inside", "grid", "near") if live or k != "inside"]
    findable = exported or (live and turn is None)  # the live find box on a 2-D map (a 3-D one turns)
    controls = [*(_find_box(plot, source, exported) if findable else []), *_label_controls(live)]
    return row(column(plot, *turn) if turn else plot, column(*controls, *panel))


def page_columns(data: MapData) -> dict[str, Any]:
    """The metadata columns the page carries: numbers as numpy arrays (Bokeh sends them as binary typed
    arrays, not JSON lists), text as lists of str; other kinds are left out."""
    columns = {}
    for name, values in data.columns.items():
        values = np.asarray(values)
        if values.dtype.kind in "biuf":
            columns[name] = values.astype(np.float64)
        elif values.dtype.kind in "USO":
            columns[name] = values.astype(str).tolist()
    return columns


def colour_scale(data: MapData, color: str | None, how: str = "auto") -> ColourScale | None:
    """The scale of the colour column: ``data.colour`` when it is that column's, else chosen from the
    drawn objects."""
    if color is None:
        return None
    if data.colour is not None and data.colour.column == color:
        return data.colour
    return choose(color, data.columns[color], how)


def points_data(
    data: MapData, columns: dict[str, Any], live: bool, scale: ColourScale | None = None
) -> dict[str, Any]:
    """The points' ColumnDataSource data: the catalog's columns under their own names, then the map's
    own, namespaced (:data:`~hyrax.visualize.source.OWN`: coordinates and the 3-D projection,
    thumbnails, the colour value and, on the standalone page, each point's neighbours; the live page asks
    the vector index), so that no catalog column is shadowed."""
    points = {
        **columns,
        "object_id": data.ids.astype(str).tolist(),
        OWN["x"]: np.asarray(data.coordinates[:, 0], dtype=np.float32),
        OWN["y"]: np.asarray(data.coordinates[:, 1], dtype=np.float32),
        OWN["thumbnail"]: data.thumbnails or [""] * len(data.ids),
    }
    if data.coordinates.shape[1] >= 3:  # a turnable projection of the first three components
        points[OWN["z"]] = np.asarray(data.coordinates[:, 2], dtype=np.float32)
        points[OWN["px"]], points[OWN["py"]] = project(data.coordinates[:, :3], *VIEW_ANGLES)
    if scale is not None:
        points[OWN["colour"]] = scale.encode(data.columns[scale.column])
    if not live:
        points[OWN["neighbours"]] = (
            data.neighbours.tolist() if data.neighbours is not None else [[] for _ in data.ids]
        )
    return points


def _figure(data: MapData, title: str, live: bool):
    from bokeh.plotting import figure

    ranges, size = {}, {"width": 700, "height": 600}
    # fixed ranges: the server (or the export's files) answer for exactly this viewport
    if (live or data.exported) and data.extent is not None:
        x0, y0, x1, y1 = data.extent
        ranges = {"x_range": (x0, x1), "y_range": (y0, y1)}
    if data.atlas:  # the atlas's square in a square frame: its thumbnails keep their shape
        x0, y0, x1, y1 = data.atlas["manifest"]["extent"]
        ranges = {"x_range": (x0, x1), "y_range": (y0, y1)}
        size = {"frame_width": ATLAS_FRAME_PX, "frame_height": ATLAS_FRAME_PX}
    return figure(
        title=f"{title}: {len(data.ids):,} of {data.total:,} objects",
        **size,
        tools=TOOLS + ",save",
        output_backend=OUTPUT_BACKEND,
        **ranges,
    )


def _density_layer(plot, data: MapData, live: bool):
    """Every object as a density under the drawn sample: on the live page an image the server
    re-aggregates for each viewport (its source returned), on the standalone page a fixed image."""
    from bokeh.models import ColumnDataSource

    if live:
        empty = {"url": [], "x": [], "y": [], "w": [], "h": []}
        densities = ColumnDataSource(data.density_url or empty, name="density_source")
        plot.image_url(
            url="url", x="x", y="y", w="w", h="h", anchor="bottom_left", source=densities, name="density"
        )
        if data.density_url:
            plot.title.text += SAMPLED
        return densities
    if data.density is not None:
        x0, y0, x1, y1 = data.extent
        packed = density_rgba(data.density).view(np.uint32).reshape(data.density.shape)
        plot.image_rgba(image=[packed], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0, name="density")
        plot.title.text += SAMPLED
    return None


def _fill(plot, scale: ColourScale | None):
    """The points' fill: one colour, a categorical palette with a legend, or Viridis on a linear, log or
    rank scale with a colour bar; the legend's or colour bar's title names the column and the scale."""
    if scale is None:
        return "#1f77b4"
    from bokeh.models import ColorBar, FixedTicker, Legend, LegendItem
    from bokeh.transform import factor_cmap, linear_cmap, log_cmap

    if scale.kind == "category":  # one legend entry per category, in its order, whatever is drawn
        items = [
            LegendItem(label=label, renderers=[_swatch(plot, colour)])
            for label, colour in zip(scale.categories, scale.colours, strict=True)
        ]
        plot.add_layout(Legend(items=items, title=scale.title, name="colour_legend"), "right")
        return factor_cmap(OWN["colour"], list(scale.colours), list(scale.categories))
    make = log_cmap if scale.kind == "log" else linear_cmap
    fill = make(OWN["colour"], "Viridis256", scale.low, scale.high)
    bar = ColorBar(color_mapper=fill["transform"], title=scale.title, name="colour_bar")
    if scale.kind == "rank":  # ticks at quantiles, labelled with the column's values there
        ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
        values = np.interp(ticks, np.linspace(0, 1, len(scale.quantiles)), scale.quantiles)
        bar.ticker = FixedTicker(ticks=ticks)
        bar.major_label_overrides = {t: f"{v:.3g}" for t, v in zip(ticks, values, strict=True)}
    plot.add_layout(bar, "right")
    return fill


def _swatch(plot, colour: str):
    """A legend entry's marker: a renderer of one point that is never drawn (NaN), so that the legend
    shows every category in a fixed order and colour, whichever are in view."""
    return plot.scatter(x=[np.nan], y=[np.nan], size=9, fill_color=colour, line_color=None)


def _side_panel(source, names: list[str], live: bool, exported: str = "") -> dict[str, Any]:
    """The selection's table, its CSV button, its image grid, the neighbour grid and (live) the count of
    every object inside a box or lasso; wired to the points' selection."""
    from bokeh.models import Button, ColumnDataSource, CustomJS, DataTable, Div, TableColumn

    selected = ColumnDataSource({"object_id": [], **{name: [] for name in names}})
    table = DataTable(
        source=selected,
        width=560,
        height=260,
        columns=[TableColumn(field=n, title=n) for n in ["object_id", *names]],
    )
    grid = Div(text="<i>Select objects with the lasso or box tool.</i>", width=560, name="selection_grid")
    near = Div(text="<i>Click an object to see its nearest neighbours.</i>", width=560, name="neighbour_grid")
    inside = Div(text="", width=560, name="selection_count")
    args = {"source": source, "selected": selected, "grid": grid, "names": names, "live": live}
    code = script(
        ("escape", "csv", "labels", "selection"),
        "listenForLabelKeys(); showSelection(source, selected, grid, names, live)",
    )
    source.selected.js_on_change("indices", CustomJS(args=args, code=code))
    code = script(
        ("escape", "csv", "labels", "neighbours", "exported"),
        "listenForLabelKeys(); if (exported) exportOf(exported); showNeighbours(source, near, live)",
    )
    args = {"source": source, "near": near, "live": live, "exported": exported}
    source.selected.js_on_change("indices", CustomJS(args=args, code=code))
    download = Button(label="Download selection as CSV", width=220)
    code = script(("csv",), "downloadCSV(selected.data, names, 'hyrax_selection.csv')")
    download.js_on_event(
        "button_click", CustomJS(args={"selected": selected, "names": ["object_id", *names]}, code=code)
    )
    return {"table": table, "download": download, "inside": inside, "grid": grid, "near": near}


def _labelled_marks(plot, data: MapData) -> None:
    """Labelled objects ringed on the map (red: interesting, grey: not); the label buttons update them."""
    from bokeh.models import ColumnDataSource

    empty = {"object_id": [], "x": [], "y": [], "label": [], "colour": []}
    marks = ColumnDataSource(data.marks or empty, name="labelled")
    plot.scatter(
        "x",
        "y",
        source=marks,
        size=13,
        fill_color=None,
        line_color="colour",
        line_width=2,
        name="labelled_marks",
    )


def _label_controls(live: bool) -> list:
    """Label the selection (buttons or keys 1/0, an optional tag). Live: re-rank every object from the
    labels and show the ranking and what to label next. Standalone: export the page's labels as CSV."""
    from bokeh.layouts import row
    from bokeh.models import Button, CustomJS, Div, TextInput

    interesting = Button(label="Interesting (1)", button_type="success", width=150, name="label_1")
    interesting.js_on_event(
        "button_click", CustomJS(code=script(("escape", "csv", "labels"), "hyraxLabel(null, 1)"))
    )
    boring = Button(label="Not interesting (0)", width=160, name="label_0")
    boring.js_on_event(
        "button_click", CustomJS(code=script(("escape", "csv", "labels"), "hyraxLabel(null, 0)"))
    )
    tag = TextInput(placeholder="tag (optional), e.g. ring", width=220, name="label_tag")
    status = Div(
        text="<i>Label the selection: these buttons, or keys 1 and 0.</i>", width=560, name="label_status"
    )
    if not live:
        export = Button(label="Download labels as CSV", width=220, name="labels_csv")
        code = script(
            ("escape", "csv", "labels"),
            "downloadText(labelsCSV(window._hyrax_labels || {}), 'hyrax_labels.csv')",
        )
        export.js_on_event("button_click", CustomJS(code=code))
        return [row(interesting, boring, tag), status, export]
    ranking = Div(text="", width=560, name="ranking_grid")
    rank = Button(label="Re-rank from the labels", button_type="primary", width=220, name="rank_button")
    code = script(("escape", "csv", "labels", "ranking"), "rerank(ranking)")
    rank.js_on_event("button_click", CustomJS(args={"ranking": ranking}, code=code))
    return [row(interesting, boring, tag), status, rank, ranking]


def _turnable_view(source, fill, title: str) -> tuple:
    """The 3-D map: the first three components projected, turned with two sliders. It shares the points'
    source, so a lasso here selects the same objects (and fills the same table and images)."""
    from bokeh.models import CustomJS, Slider
    from bokeh.plotting import figure

    view = figure(
        title=f"{title} in 3-D (components 1-3): turn it with the sliders",
        width=700,
        height=500,
        tools=TOOLS,
        output_backend=OUTPUT_BACKEND,
        match_aspect=True,
        name="map_3d",
    )
    view.scatter(OWN["px"], OWN["py"], source=source, size=5, fill_color=fill, **POINT_STYLE)
    azimuth = Slider(start=0, end=360, step=5, value=VIEW_ANGLES[0], title="azimuth (degrees)", width=340)
    elevation = Slider(
        start=-90, end=90, step=5, value=VIEW_ANGLES[1], title="elevation (degrees)", width=340
    )
    turn = CustomJS(
        args={"source": source, "azimuth": azimuth, "elevation": elevation},
        code=script(
            ("project",), "project(source.data, azimuth.value, elevation.value); source.change.emit()"
        ),
    )
    azimuth.js_on_change("value", turn)
    elevation.js_on_change("value", turn)
    return view, azimuth, elevation


def _select_regions(plot, inside) -> None:
    """Live page: a box or lasso on the 2-D map selects, in Python, every object inside it."""
    from bokeh.models import CustomJS

    code = script(("escape", "regions"), "selectRegion(cb_obj, inside)")
    plot.js_on_event("selectiongeometry", CustomJS(args={"inside": inside}, code=code))


def _follow_viewport(plot, source, densities, title: str, turn: tuple | None = None) -> None:
    """Live page: after each pan or zoom (debounced), fetch the viewport's points and density."""
    from bokeh.models import CustomJS

    args = {
        "plot": plot,
        "source": source,
        "densities": densities,
        "title": title,
        "angles": list(turn[1:]) if turn else [],
    }
    code = script(
        ("escape", "project", "atlas", "viewport"), "followViewport(plot, source, densities, title, angles)"
    )
    callback = CustomJS(args=args, code=code)
    for axis in (plot.x_range, plot.y_range):
        axis.js_on_change("start", callback)
        axis.js_on_change("end", callback)


def _atlas_layers(plot) -> dict[str, Any]:
    """The atlas's tiles of the level in view and, zoomed in past its deepest level, single objects'
    thumbnails (:mod:`hyrax.visualize.atlas`; drawn by ``js/atlas.js``)."""
    from bokeh.models import ColumnDataSource

    layers = {}
    for name, anchor, extra in (
        ("atlas_tiles", "bottom_left", ("z", "tx", "ty")),
        ("object_images", "center", ()),
    ):
        empty = {key: [] for key in ("url", "x", "y", "w", "h", *extra)}
        layers[name] = ColumnDataSource(empty, name=name)
        plot.image_url(url="url", x="x", y="y", w="w", h="h", anchor=anchor, source=layers[name], name=name)
    return layers


def _follow_atlas(plot, atlas: str, layers: dict, source, points: list, exported: str, live: bool) -> None:
    """After each pan or zoom, and when the points change: the density view, a level's tiles or single
    objects; a click on a thumbnail selects its object."""
    from bokeh.models import CustomJS

    renderers = {"points": points, "density": plot.select(name="density")}
    args = {
        "plot": plot,
        "atlas": atlas,
        "tiles": layers["atlas_tiles"],
        "objects": layers["object_images"],
        "source": source,
        "renderers": renderers,
        "exported": exported,
        "live": live,
    }
    call = "if (exported) exportOf(exported); followAtlas(plot, atlas, tiles, objects, source, renderers)"
    callback = CustomJS(args=args, code=script(("escape", "atlas", "exported", "viewport"), call))
    for axis in (plot.x_range, plot.y_range):
        axis.js_on_change("start", callback)
        axis.js_on_change("end", callback)
    source.js_on_change("data", callback)
    call = "if (exported) exportOf(exported); atlasTap(cb_obj, plot, atlas, source, live)"
    plot.js_on_event(
        "tap", CustomJS(args=args, code=script(("escape", "atlas", "exported", "viewport"), call))
    )


def _follow_export(plot, source, title: str, exported: str) -> None:
    """A static export's page: after each pan or zoom, the points of the tiles in view."""
    from bokeh.models import CustomJS

    code = script(("escape", "atlas", "exported", "viewport"), "followExport(plot, source, title, exported)")
    callback = CustomJS(
        args={"plot": plot, "source": source, "title": title, "exported": exported}, code=code
    )
    for axis in (plot.x_range, plot.y_range):
        axis.js_on_change("start", callback)
        axis.js_on_change("end", callback)


def _find_box(plot, source, exported: str) -> list:
    """The find box of a static export (the id looked up in its object files) or of the live page (asked
    of the server): the map centred on the object and the object selected."""
    from bokeh.layouts import row
    from bokeh.models import Button, CustomJS, Div, TextInput

    find = TextInput(placeholder="object id", width=220, name="find_id")
    status = Div(text="<i>Find an object by its id.</i>", width=330, name="find_status")
    args = {"input": find, "plot": plot, "source": source, "status": status, "exported": exported}
    call = (
        "findObject(input, plot, source, status, exported)"
        if exported
        else "findLive(input, plot, source, status)"
    )
    code = script(("escape", "atlas", "exported", "viewport"), call)
    button = Button(label="Find", width=80, name="find_button")
    button.js_on_event("button_click", CustomJS(args=args, code=code))
    find.js_on_change("value", CustomJS(args=args, code=code))
    return [row(find, button, status)]


def page_html(layout: Any, title: str = "Hyrax latent space") -> str:
    """A standalone page: Bokeh's JavaScript inline, so it opens with no server and no network."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(layout, INLINE, title)
