"""``visualize``: the latent-space map with images. One page for the notebook, the browser and a file."""

from __future__ import annotations

import argparse
import http.server
import threading

from hyrax.verbs.verb import Verb


class VisualizeVerb(Verb):
    name = "visualize"
    summary = (
        "Show the latest reduce_dimensions map with thumbnails; serve it on 127.0.0.1 or write --html FILE."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--html", metavar="FILE", help="write a standalone page instead of serving")
        parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default visualize.port)")
        parser.add_argument(
            "-r", "--results-dir", metavar="RUN_DIR", help="a reduce_dimensions run (default: the latest)"
        )

    def run(self, results_dir=None, color_column=None):
        """A MapView: displays in Jupyter; ``.save(path)`` writes the standalone page."""
        from hyrax.config import get_setting
        from hyrax.visualize.explorer import MapView, build_layout, gather, page_html, require_reduce_run

        run = require_reduce_run(self.config, results_dir)
        settings = self.config["visualize"]
        data = gather(
            self.config,
            run,
            max_points=int(settings["max_points"]),
            max_thumbnails=int(settings["max_thumbnails"]),
            stretch=settings["stretch"],
            band=get_setting(self.config, "visualize.band"),
        )
        layout = build_layout(data, color_column or get_setting(self.config, "visualize.color_column"))
        return MapView(data, layout, page_html(layout))

    def run_cli(self, args: argparse.Namespace) -> int:
        from hyrax.config import get_setting

        view = self.run(args.results_dir)
        target = args.html or get_setting(self.config, "visualize.html")
        if target:
            print(f"map of {len(view.data.ids):,} objects written to {view.save(target)}")
            return 0
        serve(view.html, args.port or int(self.config["visualize"]["port"]))
        return 0


def serve(html: str, port: int, forever: bool = True):
    """Serve the page on 127.0.0.1:port (0: any free port); returns the server when not ``forever``."""
    page = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"Hyrax map at http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C to stop)", flush=True)
    if not forever:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return None
