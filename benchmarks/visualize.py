"""The map in headless Chromium: time to first render and to an updated selection. Prints one table.

    python benchmarks/visualize.py [--points 100000 1000000] [--repeats 1]

How it is fair: the map is a real reduce_dimensions run (h.reduce_dimensions() with PCA over a complete
infer run of 8-d clustered vectors) whose infer data is a catalog with a metadata column and an image
per object, as a user's is, so the page carries thumbnails and the selection table metadata. Both front
doors go through the public path: h.visualize() then view.serve() (the live app on 127.0.0.1, as
`hyrax visualize`) or view.save() (the standalone page, as `hyrax visualize --html`), with Bokeh's
default renderer (WebGL; software GL here). Every measurement is a fresh Python process with a fresh
Chromium (no imports, page caches or browser caches carried from another measurement); the doors
alternate which goes first over --repeats rounds and the best of each time is kept.

At most visualize.max_points are drawn (a seeded sample over a density of all beyond that). "Build" is
the time from h.visualize() (imports included) until the page is served or written; "first render" from
navigation until the canvas shows the points; "zoom" (live app) from a zoom to the central ninth until
the server's re-aggregated view is drawn; "selection" from the end of a box-select drag until the table
shows the selected rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import run_alternating, run_case

CATALOG = '''
import numpy as np
from hyrax.datasets import HyraxDataset

class CatalogImages(HyraxDataset):
    """A catalog of N objects (ids and a magnitude as columns) whose 3x32x32 images are made on read."""

    def __init__(self, config, data_location=None):
        self.size = config["data_set"]["HyraxRandomDataset"]["size"]
        columns = {
            "object_id": np.char.add("obj", np.arange(self.size).astype(str)),
            "magnitude": np.random.default_rng(0).uniform(18, 25, self.size),
        }
        super().__init__(config, data_location, columns)

    def __len__(self):
        return self.size

    def get_image(self, idx):
        return np.random.default_rng(idx).random((3, 32, 32), dtype=np.float32)
'''


def case_make(directory: str, points: int) -> dict:
    """An infer run of ``points`` 8-d clustered vectors over the CatalogImages data, and its PCA map."""
    from hyrax import Hyrax
    from hyrax.config import ConfigManager
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultWriter

    directory = Path(directory)
    (directory / "catalog_images.py").write_text(CATALOG)
    config = ConfigManager().config
    config["general"]["results_dir"] = str(directory / "results")
    config["data_set"]["HyraxRandomDataset"]["size"] = points
    config["data_request"] = {"infer": {"data": {"dataset_class": "catalog_images.CatalogImages"}}}
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 8)) * 10
    with RunDir.create(config, "infer") as run, ResultWriter(run.path, (8,), "float32") as writer:
        for begin in range(0, points, 200_000):
            count = min(200_000, points - begin)
            vectors = centres[rng.integers(0, 30, count)] + rng.normal(size=(count, 8))
            writer.write(
                np.char.add("obj", np.arange(begin, begin + count).astype(str)), vectors.astype(np.float32)
            )
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(directory / "results"))
    h.set_config("results.inference_dir", str(run.path))
    h.set_config("reduce_dimensions.name", "pca")
    return {"reduce_run": str(h.reduce_dimensions().data_location)}


def case_measure(directory: str, reduce_run: str, door: str, max_points: int) -> dict:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, directory)  # the infer data's dataset class, as a user's installed package would be
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--enable-unsafe-swiftshader",
                "--disable-background-networking",
            ],
        )
        try:
            return measure(browser, directory, reduce_run, door, max_points)
        finally:
            browser.close()


def measure(browser, directory: str, reduce_run: str, door: str, max_points: int) -> dict:
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("visualize.max_points", max_points)
    start = time.perf_counter()
    view = h.visualize(results_dir=reduce_run)
    if door == "live":
        url = view.serve(0)
        drawn, page_mb = min(view.live.total, max_points), None
    else:
        page = view.save(Path(directory) / f"map-{time.time_ns()}.html")
        url, drawn, page_mb = page.as_uri(), len(view.data.ids), page.stat().st_size / 1e6
    build = time.perf_counter() - start
    try:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("canvas", timeout=120_000)
        while _blue_pixels(page.screenshot()) < 200:  # the points are drawn (Bokeh's default blue)
            if time.perf_counter() - start > 300:
                raise SystemExit(f"no points rendered after 300 s ({door})")
        first = time.perf_counter() - start
        zoom = _zoom(page) if door == "live" else None
        page.click("[title='Box Select']")
        box = page.locator("canvas").first.bounding_box()
        page.mouse.move(box["x"] + 40, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.9, steps=5)
        start = time.perf_counter()
        page.mouse.up()
        page.locator(".slick-row").first.wait_for(timeout=300_000)
        selection = time.perf_counter() - start
        page.close()
    finally:
        if door == "live":
            view.live.stop()
    return {
        "drawn": drawn,
        "build": build,
        "first": first,
        "zoom": zoom,
        "selection": selection,
        "page_mb": page_mb,
    }


def _zoom(page) -> float:
    """Seconds from a zoom (to the central ninth of the map) until the redrawn view is on screen:
    the 200 ms debounce, the server's answer (points in view + density), and Bokeh's redraw."""
    start = time.perf_counter()
    page.evaluate("""() => {
        const plot = [...Bokeh.documents[0].all_models].find(m => m.x_range && m.y_range && m.renderers);
        const [dx, dy] = [(plot.x_range.end - plot.x_range.start) / 3, (plot.y_range.end - plot.y_range.start) / 3];
        plot.x_range.setv({start: plot.x_range.start + dx, end: plot.x_range.end - dx});
        plot.y_range.setv({start: plot.y_range.start + dy, end: plot.y_range.end - dy});
    }""")
    page.wait_for_function("() => (window._hyrax_views || 0) > 0", timeout=120_000)
    page.screenshot()  # the frame after the redraw
    return time.perf_counter() - start


def _blue_pixels(png: bytes) -> int:
    import io

    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((pixels[..., 2] - pixels[..., 0]) > 60).sum())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--max-points", type=int, default=None, help="default: visualize.max_points")
    parser.add_argument("--doors", nargs="+", default=["live", "standalone"], choices=["live", "standalone"])
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each door; the best of each time is kept"
    )
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *values = args.case
        function = {"make": case_make, "measure": case_measure}[name]
        print(json.dumps(function(*(int(v) if v.isdigit() else v for v in values))))
        return
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        raise SystemExit("Chromium is needed: apt-get install chromium")
    from hyrax.config import ConfigManager

    max_points = args.max_points or int(ConfigManager().config["visualize"]["max_points"])
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for points in args.points:
            directory = Path(work) / str(points)
            directory.mkdir()
            reduce_run = run_case(__file__, "make", directory, points)["reduce_run"]
            runs = run_alternating(
                __file__,
                {door: ("measure", directory, reduce_run, door, max_points) for door in args.doors},
                args.repeats,
            )
            for door in args.doors:
                best = {
                    key: min(r[key] for r in runs[door]) if runs[door][0][key] is not None else None
                    for key in ("build", "first", "zoom", "selection")
                }
                rows.append((points, door, {**runs[door][0], **best}))
    print(
        f"\nbest of {args.repeats} run(s) per door, each a fresh process and a fresh Chromium; "
        f"at most {max_points:,} points drawn"
    )
    print(
        f"{'points':>10} {'front door':>11} {'drawn':>9} {'page':>8} {'build (s)':>10} "
        f"{'first render (s)':>17} {'zoom (s)':>9} {'selection (s)':>14}"
    )
    for points, door, r in rows:
        page = f"{r['page_mb']:.1f}MB" if r["page_mb"] else "-"
        zoom = f"{r['zoom']:.2f}" if r["zoom"] is not None else "-"
        print(
            f"{points:>10,} {door:>11} {r['drawn']:>9,} {page:>8} {r['build']:>10.2f} "
            f"{r['first']:>17.2f} {zoom:>9} {r['selection']:>14.2f}"
        )


if __name__ == "__main__":
    main()
