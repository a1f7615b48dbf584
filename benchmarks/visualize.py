"""The map in headless Chromium: time to first render and to an updated selection.

    python benchmarks/visualize.py [--points 100000 1000000]

For each N a reduce_dimensions-like run of N 2-D points is written and opened in the system Chromium
(software WebGL) through both front doors: the live app (`hyrax visualize`, served on 127.0.0.1) and the
standalone page (`hyrax visualize --html`). At most visualize.max_points are drawn (a seeded sample over
a density of all beyond that). "Build" is Python's time to load the run and make the page; "first
render" from navigation until the canvas shows the points; "zoom" (live app) from a zoom to the central
ninth until the server's re-aggregated view is drawn; "selection" from the end of a box-select drag until
the table shows the selected rows.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def make_run(directory: Path, points: int) -> Path:
    from hyrax.results.store import ResultWriter

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 2)) * 10
    xy = (centres[rng.integers(0, 30, points)] + rng.normal(size=(points, 2))).astype(np.float32)
    with ResultWriter(directory, (2,), "float32") as writer:
        for begin in range(0, points, 200_000):
            writer.write(
                np.char.add("obj", np.arange(begin, min(begin + 200_000, points)).astype(str)),
                xy[begin : begin + 200_000],
            )
    return directory


def measure(points: int, browser, door: str, max_points: int) -> dict:
    from hyrax.config import ConfigManager
    from hyrax.visualize.explorer import build_layout, gather, page_html
    from hyrax.visualize.live import LiveMap

    config = ConfigManager().config
    with tempfile.TemporaryDirectory() as work:
        run = make_run(Path(work) / "run", points)
        start = time.perf_counter()
        live = None
        if door == "live":
            live = LiveMap(config, run, max_points=max_points)
            url = live.start(0)
            drawn, page_mb = min(points, max_points), None
        else:
            data = gather(config, run, max_points=max_points)
            html = page_html(build_layout(data))
            (Path(work) / "map.html").write_text(html)
            url, drawn, page_mb = (Path(work) / "map.html").as_uri(), len(data.ids), len(html) / 1e6
        build = time.perf_counter() - start
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("canvas", timeout=120_000)
        while _blue_pixels(page.screenshot()) < 200:  # the points are drawn (Bokeh's default blue)
            if time.perf_counter() - start > 300:
                raise SystemExit(f"no points rendered after 300 s at N={points}")
        first = time.perf_counter() - start
        zoom = _zoom(page) if live else None
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
        if live:
            live.stop()
    return {
        "door": door,
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
        "--renderer",
        default="webgl",
        choices=["webgl", "canvas"],
        help="Bokeh's output backend (webgl, the default, is software GL here: slower than canvas "
        "headless, faster with a GPU)",
    )
    args = parser.parse_args()
    import hyrax.visualize.explorer as explorer

    explorer.OUTPUT_BACKEND = args.renderer
    from hyrax.config import ConfigManager

    max_points = args.max_points or int(ConfigManager().config["visualize"]["max_points"])
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("Chromium is needed: apt-get install chromium")
    rows = []
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
        for points in args.points:
            for door in args.doors:
                rows.append((points, measure(points, browser, door, max_points)))
        browser.close()
    print(
        f"\n{'points':>10} {'front door':>11} {'drawn':>9} {'page':>8} {'build (s)':>10} "
        f"{'first render (s)':>17} {'zoom (s)':>9} {'selection (s)':>14}"
    )
    for points, r in rows:
        page = f"{r['page_mb']:.1f}MB" if r["page_mb"] else "-"
        zoom = f"{r['zoom']:.2f}" if r["zoom"] is not None else "-"
        print(
            f"{points:>10,} {r['door']:>11} {r['drawn']:>9,} {page:>8} {r['build']:>10.2f} "
            f"{r['first']:>17.2f} {zoom:>9} {r['selection']:>14.2f}"
        )


if __name__ == "__main__":
    main()
