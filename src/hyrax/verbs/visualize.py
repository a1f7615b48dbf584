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
                f"then open http://127.0.0.1:{port}/ there",
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
        """The map of :meth:`VisualizeVerb.run`, with a FutureWarning naming ``h.visualize()``."""
        import warnings

        warnings.warn(
            "visualize_v2 is h.visualize() in this Hyrax (the map with images); call that instead.",
            FutureWarning,
            stacklevel=2,
        )
        return super().run(input_dir, color_column, **options)
