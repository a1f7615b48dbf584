"""The map from a notebook or the command line: :class:`MapView` (``h.visualize()`` returns one) gives the
standalone page, the live app and what was selected in it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hyrax.visualize.mapdata import MapData, gather
from hyrax.visualize.page import build_layout, page_html
from hyrax.visualize.source import MapSource


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
            "color_scale": get_setting(config, "visualize.color_scale") or "auto",
        }
        self._max_thumbnails = int(settings["max_thumbnails"])
        self._notebook = get_setting(config, "visualize.notebook") or "live"
        self._data = self._html = self._live = None
        self.source = MapSource(config, self.reduce_run)
        # A wrong column, or a scale that cannot colour it, is an error now, not when the page is drawn.
        self.color = self.source.check_color(color)
        self.source.colour_scale(self.color, self._options["color_scale"])

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
            from hyrax.visualize.export import embedded_atlas

            self._data.atlas = embedded_atlas(self.reduce_run)  # its coarser levels, in the page
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
        """Serve the live app on 127.0.0.1:port (0: any free port) in the background; the address to
        open, with the session token the server asks of every request (``http://127.0.0.1:PORT/?token=``)."""
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

    def export(self, directory: str | Path, neighbours: int | None = None) -> Path:
        """Write the map as a folder any static web server can host (:mod:`hyrax.visualize.export`):
        the page, the atlas's tiles, the points at each zoom, metadata, thumbnails and each object's
        ``neighbours`` nearest (default ``visualize.export_neighbours``), searchable by object id.

        >>> view.export("ring_map")  # doctest: +SKIP
        >>> # then: python -m http.server -d ring_map, and open http://127.0.0.1:8000/
        """
        from hyrax.visualize.export import Exporter

        if neighbours is None:
            neighbours = int(self.config["visualize"]["export_neighbours"])
        options = {k: self._options[k] for k in ("stretch", "band", "max_points", "color_scale")}
        exporter = Exporter(
            self.config, self.source, Path(directory), neighbours, color=self.color, **options
        )
        return exporter.run()

    def _repr_html_(self) -> str:
        import html

        if self._notebook == "live":
            url = html.escape(self.serve())  # with the token: the page passes it on to its requests
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
