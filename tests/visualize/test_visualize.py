"""The map page and the demo (the browser test of the page is in test_browser.py)."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest

from hyrax.errors import ConfigError, ResultsError
from hyrax.verbs.demo import DemoVerb
from hyrax.visualize.stretch import PLACEHOLDER, png_data_uri, stretch, to_rgb


def test_stretches_and_rgb():
    image = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    for how in ("asinh", "log", "zscale", "linear"):
        scaled = stretch(image[0], how)
        assert scaled.min() >= 0 and scaled.max() <= 1
    assert to_rgb(image).shape == (16, 16, 3) and to_rgb(image).dtype == np.uint8  # Lupton RGB
    assert to_rgb(image, band=1).shape == (16, 16, 3)
    assert to_rgb(image[:1]).shape == (16, 16, 3)
    assert png_data_uri(to_rgb(image)).startswith("data:image/png;base64,")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README demo, run once for this module (it is also the pipeline's end-to-end test)."""
    results = tmp_path_factory.mktemp("demo") / "out"
    lines: list[str] = []
    done = DemoVerb({}).run(str(results), epochs=3, say=lines.append)
    return results, done, "\n".join(lines)


def test_demo_runs_the_whole_pipeline(demo):
    results, done, printed = demo
    assert "1/6 training" in printed and "6/6 writing the map page" in printed
    assert "nearest neighbours of ring galaxy" in printed
    assert len(done["outliers"]) == 10 and done["page"].is_file()
    page = done["page"].read_text()
    assert "Bokeh" in page and "cdn.bokeh.org" not in page  # inline resources: opens offline
    assert page.count("data:image/png;base64,") >= 376


def _hyrax_on(results):
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(results))
    return h


def test_visualize_colour_and_errors(demo, tmp_path):
    results, _, _ = demo
    view = _hyrax_on(results).visualize(color_column="ring")
    frame = view.to_dataframe()
    assert len(frame) == 376 and {"object_id", "x", "y", "ring", "outlier_score"} <= set(frame.columns)
    with pytest.raises(
        ConfigError, match=r"\"rnig\" is not a column of the map. Did you mean 'ring'\?.*Columns:"
    ):
        _hyrax_on(results).visualize(color_column="rnig")
    with pytest.raises(ResultsError, match=r"run `hyrax reduce_dimensions`"):
        _hyrax_on(tmp_path / "empty").visualize()


def test_broken_images_become_placeholders(demo, caplog):
    from hyrax.datasets.decals_rings import DecalsRingsDataset

    results, _, _ = demo
    original = DecalsRingsDataset.display
    DecalsRingsDataset.display = lambda self, idx: (
        (_ for _ in ()).throw(OSError("disk error")) if idx == 0 else original(self, idx)
    )
    try:
        view = _hyrax_on(results).visualize()
    finally:
        DecalsRingsDataset.display = original
    assert view.data.thumbnails.count(PLACEHOLDER) == 1
    assert any("no thumbnail for J000411.19+020924.0: disk error" in r.getMessage() for r in caplog.records)


def test_served_page(demo):
    from hyrax.verbs.visualize import serve

    results, _, _ = demo
    view = _hyrax_on(results).visualize()
    server = serve(view.html, 0, forever=False)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/", timeout=10) as response:
            assert response.status == 200 and response.read().decode() == view.html
    finally:
        server.shutdown()


def test_large_maps_draw_a_sample_over_the_density_of_all(tmp_path):
    from hyrax.config import ConfigManager
    from hyrax.results.store import ResultWriter
    from hyrax.visualize.explorer import build_layout, gather, page_html

    rng = np.random.default_rng(0)
    with ResultWriter(tmp_path, (2,), "float32") as writer:
        writer.write(
            np.char.add("p", np.arange(5000).astype(str)), rng.normal(size=(5000, 2)).astype(np.float32)
        )
    data = gather(ConfigManager().config, tmp_path, max_points=1000)
    assert len(data.ids) == 1000 and data.total == 5000
    assert data.density.sum() == 5000  # every object counted, not only the drawn ones
    html = page_html(build_layout(data))
    assert "density of all; points: a sample" in html and "1,000 of 5,000 objects" in html
