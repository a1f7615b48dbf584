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

logger = logging.getLogger(__name__)

SOURCE_FILE = "source.toml"


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

    def to_dataframe(self):
        import pandas as pd

        frame = pd.DataFrame(
            {"object_id": self.ids, "x": self.coordinates[:, 0], "y": self.coordinates[:, 1]}
        )
        for name, values in self.columns.items():
            frame[name] = values
        return frame


def infer_run_of(reduce_run: Path) -> Path | None:
    """The inference run a reduce_dimensions run mapped (recorded in its source.toml)."""
    import tomllib

    path = reduce_run / SOURCE_FILE
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        return Path(tomllib.load(handle)["infer_run"])


def gather(
    config: Mapping,
    reduce_run: Path,
    max_points: int = 200_000,
    max_thumbnails: int = 2000,
    stretch: str = "asinh",
    band: int | None = None,
    neighbours: int = 8,
    seed: int = 0,
) -> MapData:
    """Read coordinates, metadata, outlier scores, thumbnails and neighbours for the map."""
    from hyrax.results.store import ResultDataset

    reduced = ResultDataset(config, reduce_run)
    rows = np.arange(len(reduced))
    if len(rows) > max_points:  # a seeded sample keeps the page responsive; the table says how many
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
    ids = reduced.ids()[rows]
    data = MapData(ids=ids, coordinates=reduced[rows].reshape(len(rows), -1), total=len(reduced))
    if len(rows) < len(reduced):
        data.density, data.extent = density(reduced)
    infer_run = infer_run_of(Path(reduce_run))
    if infer_run is None:
        return data
    data.columns.update(_outlier_scores(infer_run, ids))
    provider = infer_provider_of(infer_run)
    if provider is not None:
        data.columns.update(provider.metadata_for(ids))
        data.thumbnails = _thumbnails(provider, ids, max_thumbnails, stretch, band)
    data.neighbours = _neighbours(infer_run, ids, neighbours)
    return data


def density(reduced, bins: int = 400) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Counts of every object on a bins x bins grid of the first two coordinates, streamed in batches."""
    low, high = np.full(2, np.inf), np.full(2, -np.inf)
    for _, coordinates in reduced.iter_batches():
        low = np.minimum(low, coordinates[:, :2].min(axis=0))
        high = np.maximum(high, coordinates[:, :2].max(axis=0))
    counts = np.zeros((bins, bins), dtype=np.int64)
    for _, coordinates in reduced.iter_batches():
        grid, _, _ = np.histogram2d(
            coordinates[:, 1], coordinates[:, 0], bins=bins, range=[[low[1], high[1]], [low[0], high[0]]]
        )
        counts += grid.astype(np.int64)
    return counts, (float(low[0]), float(low[1]), float(high[0]), float(high[1]))


def _density_rgba(counts: np.ndarray) -> np.ndarray:
    """Log-scaled counts as a grey-blue RGBA image (empty cells transparent), packed for Bokeh."""
    scaled = np.log1p(counts) / max(np.log1p(counts.max()), 1e-9)
    rgba = np.zeros((*counts.shape, 4), dtype=np.uint8)
    rgba[..., 0] = (40 + 60 * scaled).astype(np.uint8)
    rgba[..., 1] = (60 + 90 * scaled).astype(np.uint8)
    rgba[..., 2] = (120 + 135 * scaled).astype(np.uint8)
    rgba[..., 3] = np.where(counts > 0, (60 + 195 * scaled), 0).astype(np.uint8)
    return rgba.view(np.uint32).reshape(counts.shape)


def _outlier_scores(infer_run: Path, ids: np.ndarray) -> dict[str, np.ndarray]:
    from hyrax.vector_db.outliers import scores_path

    path = scores_path(infer_run)
    if not path.exists():
        return {}
    import lance
    import pandas as pd

    table = lance.dataset(str(path)).to_table().to_pandas().set_index("object_id")["outlier_score"]
    return {"outlier_score": pd.Series(ids).map(table).to_numpy(dtype=float)}


def infer_provider_of(infer_run: Path):
    """The infer group's provider as the run saw it (from its runtime_config.toml), or None."""
    from hyrax.config import ConfigManager
    from hyrax.datasets.provider import DataProvider

    try:
        return DataProvider(ConfigManager(infer_run / "runtime_config.toml").config, "infer")
    except Exception as error:  # maps and rankings still work without images and metadata
        logger.warning(
            "no images or metadata: the infer data of %s could not be opened (%s)", infer_run, error
        )
        return None


def _thumbnails(provider, ids, limit: int, how: str, band: int | None) -> list[str]:
    from hyrax.visualize.stretch import PLACEHOLDER, png_data_uri, to_rgb

    dataset = provider.datasets[provider.primary]
    rows = provider.rows_of(ids)
    pictures = []
    for position, row in enumerate(rows):
        if position >= limit or row < 0:
            pictures.append(PLACEHOLDER)
            continue
        try:
            image = (
                dataset.display(int(row))
                if callable(getattr(dataset, "display", None))
                else dataset.getter("image")(int(row))
            )
            pictures.append(png_data_uri(to_rgb(image, how, band)))
        except Exception as error:  # a broken image is a placeholder tile and a logged reason, never a crash
            logger.warning("no thumbnail for %s: %s", ids[position], error)
            pictures.append(PLACEHOLDER)
    return pictures


def _neighbours(infer_run: Path, ids: np.ndarray, k: int) -> np.ndarray | None:
    import faiss

    from hyrax.results.store import ResultDataset

    try:
        vectors = (
            ResultDataset(data_location=infer_run)
            .lookup_many(ids.tolist())
            .reshape(len(ids), -1)
            .astype(np.float32)
        )
    except Exception as error:  # neighbours are a courtesy of the page
        logger.warning("the map shows no neighbours: %s", error)
        return None
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(vectors, min(k + 1, len(ids)))
    return found[:, 1:]


def check_color(data: MapData, color: str | None) -> str | None:
    if color is None or color in data.columns:
        return color
    raise ConfigError(
        f'visualize.color_column = "{color}" is not a column of the map.{did_you_mean(color, data.columns)} '
        f"Columns: {', '.join(data.columns) or '(none: the data has no metadata)'}."
    )


def build_layout(data: MapData, color: str | None = None, title: str = "Hyrax latent space") -> Any:
    """The Bokeh layout of the map (see the module documentation)."""
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
    columns = {
        name: np.asarray(values).tolist()
        for name, values in data.columns.items()
        if np.asarray(values).dtype.kind in "biufUSO"
    }
    source = ColumnDataSource(
        {
            "x": data.coordinates[:, 0].tolist(),
            "y": data.coordinates[:, 1].tolist(),
            "object_id": data.ids.tolist(),
            "thumbnail": data.thumbnails or [""] * len(data.ids),
            "neighbours": (
                data.neighbours.tolist() if data.neighbours is not None else [[] for _ in data.ids]
            ),
            **columns,
        }
    )
    plot = figure(
        title=f"{title}: {len(data.ids):,} of {data.total:,} objects",
        width=700,
        height=600,
        tools="pan,wheel_zoom,box_select,lasso_select,tap,reset,save",
        output_backend="webgl",
    )
    if data.density is not None:  # every object as density; the drawn points are a sample of them
        x0, y0, x1, y1 = data.extent
        plot.image_rgba(
            image=[_density_rgba(data.density)], x=x0, y=y0, dw=x1 - x0, dh=y1 - y0, name="density"
        )
        plot.title.text += " (density of all; points: a sample)"
    fill = "#1f77b4"
    if color is not None:
        values = np.asarray(data.columns[color], dtype=float)
        finite = values[np.isfinite(values)]
        mapper = linear_cmap(
            color,
            "Viridis256",
            float(finite.min()) if len(finite) else 0,
            float(finite.max()) if len(finite) else 1,
        )
        fill = mapper
    points = plot.scatter(
        "x",
        "y",
        source=source,
        size=6,
        fill_color=fill,
        line_color=None,
        alpha=0.8,
        selection_fill_color="orange",
        nonselection_fill_alpha=0.25,
    )
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
    names = list(columns)
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args={"source": source, "selected": selected, "grid": grid, "names": names},
            code="""
        const rows = source.selected.indices;
        const data = source.data;
        const out = {object_id: rows.map(i => data.object_id[i])};
        for (const name of names) { out[name] = rows.map(i => data[name][i]); }
        selected.data = out;
        grid.text = '<b>' + rows.length + ' selected</b><br>' + rows.slice(0, 60).map(
            i => '<img class="hyrax-thumb" title="' + data.object_id[i] + '" src="' + data.thumbnail[i] + '" width="64" height="64">').join('');
    """,
        ),
    )
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args={"source": source, "near": near},
            code="""
        const rows = source.selected.indices;
        if (rows.length !== 1) { return; }
        const data = source.data;
        const i = rows[0];
        const tile = j => '<figure style="display:inline-block;margin:2px"><img class="hyrax-neighbour" src="' + data.thumbnail[j] +
            '" width="64" height="64"><figcaption style="font-size:9px">' + data.object_id[j] + '</figcaption></figure>';
        near.text = '<b>Nearest neighbours of ' + data.object_id[i] + '</b><br>' + [i].concat(data.neighbours[i]).map(tile).join('');
    """,
        ),
    )
    download = Button(label="Download selection as CSV", width=220)
    download.js_on_event(
        "button_click",
        CustomJS(
            args={"selected": selected, "names": ["object_id"] + names},
            code="""
        const data = selected.data;
        const lines = [names.join(',')];
        for (let r = 0; r < data.object_id.length; r++) { lines.push(names.map(n => String(data[n][r])).join(',')); }
        const blob = new Blob([lines.join('\\n')], {type: 'text/csv'});
        const link = document.createElement('a');
        link.href = URL.createObjectURL(blob);
        link.download = 'hyrax_selection.csv';
        link.click();
    """,
        ),
    )
    return row(plot, column(table, download, grid, near))


def page_html(layout: Any, title: str = "Hyrax latent space") -> str:
    """A standalone page: Bokeh's JavaScript inline, so it opens with no server and no network."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(layout, INLINE, title)


class MapView:
    """The map in a notebook: displays itself; ``to_dataframe()`` gives the shown objects."""

    def __init__(self, data: MapData, layout: Any, html: str):
        self.data, self.layout, self.html = data, layout, html

    def to_dataframe(self):
        return self.data.to_dataframe()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        import html

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
