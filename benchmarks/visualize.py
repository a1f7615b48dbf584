"""The map in headless Chromium: time to first render and to an updated selection.

    python benchmarks/visualize.py [--points 100000 1000000]

For each N a reduce_dimensions-like run of N 2-D points is written, the page is built as `hyrax
visualize` builds it (at most visualize.max_points are drawn: a seeded sample beyond that), served on
127.0.0.1 and opened in the system Chromium (software WebGL). "First render" is from navigation until the
canvas shows the points; "selection" is from the end of a box-select drag until the table shows the
selected rows.
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


def measure(points: int, browser) -> dict:
    from hyrax.config import ConfigManager
    from hyrax.verbs.visualize import serve
    from hyrax.visualize.explorer import build_layout, gather, page_html

    config = ConfigManager().config
    with tempfile.TemporaryDirectory() as work:
        run = make_run(Path(work), points)
        start = time.perf_counter()
        data = gather(config, run, max_points=int(config["visualize"]["max_points"]))
        html = page_html(build_layout(data))
        build = time.perf_counter() - start
        server = serve(html, 0, forever=False)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_selector("canvas", timeout=120_000)
        while _blue_pixels(page.screenshot()) < 200:  # the points are drawn (Bokeh's default blue)
            if time.perf_counter() - start > 300:
                raise SystemExit(f"no points rendered after 300 s at N={points}")
        first = time.perf_counter() - start
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
        server.shutdown()
    return {
        "drawn": len(data.ids),
        "build": build,
        "first": first,
        "selection": selection,
        "page_mb": len(html) / 1e6,
    }


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
    args = parser.parse_args()
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
            rows.append((points, measure(points, browser)))
        browser.close()
    print(
        f"\n{'points':>10} {'drawn':>9} {'page':>8} {'build (s)':>10} {'first render (s)':>17} {'selection (s)':>14}"
    )
    for points, r in rows:
        print(
            f"{points:>10,} {r['drawn']:>9,} {r['page_mb']:>6.1f}MB {r['build']:>10.2f} {r['first']:>17.2f} {r['selection']:>14.2f}"
        )


if __name__ == "__main__":
    main()
