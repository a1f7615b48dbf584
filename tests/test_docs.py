"""The documentation site builds with warnings as errors, executing the example notebooks (a cell error
fails the build), and its getting-started page shows the map in a real Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            str(ROOT / "docs"),
            str(out / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert built.returncode == 0, (built.stdout + built.stderr)[-5000:]
    return out / "html"


def test_the_site_has_every_page_with_executed_notebooks(site):
    for page in (
        "index",
        "install",
        "pipeline",
        "configuration",
        "cli",
        "results",
        "map",
        "download",
        "scaling",
        "trust",
        "migration",
        "api",
    ):
        assert (site / f"{page}.html").is_file(), page
    assert [p.stem for p in NOTEBOOKS] == [
        "01_getting_started",
        "02_your_own_dataset",
        "03_your_own_model",
        "04_similarity_and_outliers",
        "05_alert_stream",
    ]
    for notebook in NOTEBOOKS:
        html = (site / "notebooks" / f"{notebook.stem}.html").read_text()
        assert "cell_output" in html, notebook.stem  # outputs of the build's own execution
    reference = (site / "configuration.html").read_text()
    assert "early_stopping_patience" in reference and "reduce_dimensions" in reference  # generated
    api = (site / "api.html").read_text()
    assert "search_by_id" in api and "hyrax_model" in api  # from the docstrings


def test_getting_started_page_shows_the_map(site):
    from playwright.sync_api import sync_playwright

    from tests.visualize.test_browser import ARGS, ARTIFACTS, CHROMIUM

    if CHROMIUM is None:
        if os.environ.get("HYRAX_SKIP_BROWSER_TESTS") == "1":
            pytest.skip("Chromium is not installed and HYRAX_SKIP_BROWSER_TESTS=1")
        pytest.fail("Chromium is not installed (apt-get install chromium): the site's map cannot be checked")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.goto((site / "notebooks" / "01_getting_started.html").as_uri())
        frame = page.frame_locator("iframe").first
        frame.locator("canvas").first.wait_for(timeout=60_000)
        points = page.frames[-1].evaluate(
            "() => [...Bokeh.documents[0].all_models].find(m => m.name === 'points').data.map_x.length"
        )
        assert points == 376  # every bundled galaxy is on the map
        page.locator("iframe").first.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs_getting_started_map.png"))
        browser.close()
