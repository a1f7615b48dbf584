"""``visualize``: the latent-space map with images. One code path for the notebook, the browser and a file:
:class:`~hyrax.visualize.view.MapView` (the standalone page) and its live app
(:class:`~hyrax.visualize.live.LiveMap`)."""

from __future__ import annotations

import argparse
import socket
import time

from hyrax.verbs.verb import Verb, add_input_dir


class VisualizeVerb(Verb):
    name = "visualize"
    summary = (
        "Show the latest reduce_dimensions map with thumbnails; serve it on 127.0.0.1 or write --html FILE."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--html", metavar="FILE", help="write a standalone page instead of serving")
        parser.add_argument(
            "--export",
            metavar="DIR",
            help="write the map as a folder any static web server can host (page, atlas tiles, points, "
            "metadata, neighbours) instead of serving",
        )
        parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default visualize.port; 0: any)")
        add_input_dir(parser, what="a reduce_dimensions run")
        parser.add_argument(
            "--color-column",
            metavar="COLUMN",
            help="colour the points by this metadata column or outlier_score (default: "
            "visualize.color_column); text by category, skewed numbers on a log or rank scale "
            "(visualize.color_scale)",
        )

    def run(
        self,
        input_dir=None,
        color_column=None,
        *,
        results_dir=None,
        return_verb: bool = False,
        make_lupton_rgb_opts=None,
        width=None,
        height=None,
        **plot_options,
    ):
        """A MapView: displays in Jupyter (the live app); ``.save(path)`` writes the standalone page;
        ``.selected()`` returns the objects selected in the live app.

        ``input_dir`` (or ``results_dir``): the reduce_dimensions run to show (default: the latest).
        The published Hyrax's ``return_verb=True`` returns ``(view, view)``: the view itself holds the
        selection. Its ``make_lupton_rgb_opts`` and plot options (``width=``, ``height=``...) do not
        apply to this map: they are accepted with a warning that names what to set instead."""
        import warnings

        from hyrax.config import get_setting
        from hyrax.visualize.view import MapView, require_reduce_run

        if make_lupton_rgb_opts is not None:
            warnings.warn(
                "visualize(make_lupton_rgb_opts=...) does not apply here: thumbnails are drawn with "
                'visualize.stretch ("asinh", "log", "zscale", "linear") and visualize.band; set those.',
                FutureWarning,
                stacklevel=3,
            )
        plot_options.update({k: v for k, v in (("width", width), ("height", height)) if v is not None})
        if plot_options:
            warnings.warn(
                f"visualize({', '.join(f'{k}=' for k in plot_options)}) does not apply here: the map's "
                "layout is fixed; save it with view.save(path) and size the page in your browser.",
                FutureWarning,
                stacklevel=3,
            )
        run = require_reduce_run(self.config, input_dir or results_dir)
        view = MapView(self.config, run, color_column or get_setting(self.config, "visualize.color_column"))
        return (view, view) if return_verb else view

    def run_cli(self, args: argparse.Namespace) -> int:
        from hyrax.config import get_setting

        view = self.run(args.input_dir, getattr(args, "color_column", None))
        folder = getattr(args, "export", None) or get_setting(self.config, "visualize.export")
        if folder:
            written = view.export(folder)
            print(
                f"map of {view.source.total:,} objects exported to {written}: serve it with any static web "
                f"server, e.g. python -m http.server -d {written}"
            )
            return 0
        target = args.html or get_setting(self.config, "visualize.html")
        if target:
            print(f"map of {len(view.data.ids):,} objects written to {view.save(target)}")
            return 0
        port = args.port if args.port is not None else int(self.config["visualize"]["port"])
        import signal

        def stop(signum, frame):
            raise KeyboardInterrupt

        # Ctrl-C, and SIGTERM (a scheduler ending the job), stop the server cleanly, also when the shell
        # that started it left SIGINT ignored (a background job); set before the address is printed, which
        # is when a script may already signal.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            url = view.serve(port)
            print(f"Hyrax map of {view.live.total:,} objects at {url}  (Ctrl-C to stop)", flush=True)
            port = view.live.server.server_address[1]  # the port taken, when 0 asked for any
            print(
                f"  from another machine: ssh -L {port}:127.0.0.1:{port} {socket.gethostname()}, "
                f"then open {url} there",
                flush=True,
            )
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            view.live.stop()
        return 0


class VisualizeV2Verb(VisualizeVerb):
    """The published Hyrax's ``visualize_v2``: here it is ``visualize`` (one map, with images)."""

    name = "visualize"
    summary = "The published Hyrax's second visualizer: here the same map as visualize."

    def run(self, input_dir=None, color_column=None, **options):
        """The map of :meth:`VisualizeVerb.run`, with a FutureWarning naming ``h.visualize()``. As published,
        it shows the 2-D points of ``[data_request.visualize]``: its primary dataset's ``data_location``
        names the reduce_dimensions run (or that run's ``results.lance``)."""
        import warnings

        run = input_dir or options.get("results_dir") or visualize_request_run(self.config)
        warnings.warn(
            "visualize_v2 is h.visualize() in this Hyrax (the map with images); call that instead"
            + (
                f" (h.visualize(input_dir='{run}') for the run data_request.visualize names)."
                if run is not None and input_dir is None
                else "."
            ),
            FutureWarning,
            stacklevel=2,
        )
        return super().run(run, color_column, **options)


def visualize_request_run(config) -> str | None:
    """The reduce_dimensions run that ``[data_request.visualize]`` names (its primary dataset's
    ``data_location``), or None when there is no such group. What it names must be a run of
    reduce_dimensions: this map draws a fitted 2-D reduction, not any dataset's points."""
    from pathlib import Path

    from hyrax.config.data_request import primary_dataset
    from hyrax.errors import ConfigError
    from hyrax.results.run_dir import RunDir

    group = (config.get("data_request") or {}).get("visualize")
    if not group:
        return None
    name = primary_dataset(group)
    location = group[name].get("data_location")
    where = f"[data_request.visualize.{name}] data_location"
    if not location:
        raise ConfigError(f"{where} is not set: give the reduce_dimensions run whose 2-D map to show.")
    path = Path(str(location)).expanduser()
    if path.suffix == ".lance":  # the run's results table, as a ResultDataset location
        path = path.parent
    verb = RunDir(path).status.get("verb") if path.is_dir() else None
    if not path.is_dir() or verb not in (None, "reduce_dimensions", "umap", "pca", "tsne"):
        what = f"a run of {verb}" if verb else "not a directory"
        raise ConfigError(
            f"{where} = '{location}' is {what}: visualize_v2 shows a reduce_dimensions run here (its 2-D points and the objects' images). Give "
            f"one (hyrax reduce_dimensions makes it), or call h.visualize(input_dir=RUN)."
        )
    return str(path)
