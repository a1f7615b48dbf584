"""The map page and the demo (the browser test of the page is in test_browser.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from hyrax.errors import ConfigError, ResultsError
from hyrax.verbs.demo import DemoVerb
from hyrax.visualize.stretch import PLACEHOLDER, placeholder_png, png_data_uri, stretch, to_rgb
from tests.visualize.conftest import write_map_run


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
    assert len(frame) == 376 and {"object_id", "map_x", "map_y", "ring", "outlier_score"} <= set(
        frame.columns
    )
    with pytest.raises(
        ConfigError, match=r"\"rnig\" is not a column of the map. Did you mean 'ring'\?.*Columns:"
    ):
        _hyrax_on(results).visualize(color_column="rnig")
    with pytest.raises(ResultsError, match=r"run `hyrax reduce_dimensions`"):
        _hyrax_on(tmp_path / "empty").visualize()


def test_published_visualize_arguments(demo):
    """visualize(input_dir=, return_verb=) as published; its holoviews options (width=, height=,
    make_lupton_rgb_opts=) do not apply to this map and say what to set instead; visualize_v2 is visualize."""
    from hyrax.results.run_dir import find_latest_run

    results, _, _ = demo
    h = _hyrax_on(results)
    reduce_run = find_latest_run(results, "reduce_dimensions")
    with pytest.warns(FutureWarning, match=r"width=, height=\) does not apply.*view.save"):
        view, same = h.visualize(input_dir=reduce_run, return_verb=True, width=800, height=600)
    assert view is same and view.reduce_run == reduce_run
    with pytest.warns(FutureWarning, match=r"make_lupton_rgb_opts.*visualize.stretch"):
        h.visualize(make_lupton_rgb_opts={"stretch": 5, "Q": 8})
    with pytest.warns(FutureWarning, match="visualize_v2 is h.visualize"):
        assert len(h.visualize_v2().to_dataframe()) == 376
    with pytest.warns(FutureWarning, match=r'published Hyrax\'s name of column "ring": write "ring"'):
        assert h.visualize(color_column="ring_data").color == "ring"


def test_published_visualize_v2_shows_the_run_data_request_visualize_names(demo, tmp_path):
    """As published: the map is the primary dataset of [data_request.visualize], not the latest run
    (here general.results_dir holds no run at all; the named run is elsewhere)."""
    from hyrax.results.run_dir import find_latest_run

    results, _, _ = demo
    reduce_run = find_latest_run(results, "reduce_dimensions")
    h = _hyrax_on(tmp_path / "elsewhere")
    h.set_config(
        "data_request",
        {
            "visualize": {
                "umap": {
                    "dataset_class": "ResultDataset",
                    "data_location": str(reduce_run),
                    "primary_id_field": "object_id",
                }
            }
        },
    )
    with pytest.warns(FutureWarning, match=rf"visualize_v2 is h.visualize.*input_dir='{reduce_run}'"):
        view = h.visualize_v2()
    assert view.reduce_run == reduce_run and len(view.to_dataframe()) == 376


def test_visualize_v2_refuses_a_request_that_names_no_map(demo, tmp_path):
    from hyrax.results.run_dir import find_latest_run

    results, _, _ = demo
    infer_run = find_latest_run(results, "infer")
    h = _hyrax_on(results)
    points = {"dataset_class": "ResultDataset", "data_location": str(infer_run / "results.lance")}
    h.set_config("data_request.visualize.points", points)
    with pytest.raises(
        ConfigError,
        match=r"\[data_request.visualize.points\] data_location = .* is a run of infer: visualize_v2 shows",
    ):
        h.visualize_v2()


def test_broken_images_become_placeholders(demo, caplog):
    from hyrax.datasets.decals_rings import DecalsRingsDataset

    results, _, _ = demo
    original = DecalsRingsDataset.display
    DecalsRingsDataset.display = lambda self, idx: (
        (_ for _ in ()).throw(OSError("disk error")) if idx == 0 else original(self, idx)
    )
    try:
        view = _hyrax_on(results).visualize()
        thumbnails = view.data.thumbnails
        live_tile = view.live.thumbnail_png("J000411.19+020924.0")  # the live app: the same tile
    finally:
        DecalsRingsDataset.display = original
    assert thumbnails.count(PLACEHOLDER) == 1
    assert any("no thumbnail for J000411.19+020924.0: disk error" in r.getMessage() for r in caplog.records)
    assert live_tile == placeholder_png()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
        return response.headers["Content-Type"], body


def _decoded(column: dict) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(column["data"]), dtype=np.dtype(column["dtype"]).newbyteorder("<"))


def test_live_app_answers_the_page(demo):
    """The served app: page, viewport, thumbnails, neighbours from the vector index, selection to pandas."""
    results, _, _ = demo
    view = _hyrax_on(results).visualize(color_column="outlier_score")
    with pytest.raises(RuntimeError, match="select objects with the lasso or box tool"):
        view.selected()
    page_url = view.serve(0)
    # the page's requests carry the session token of the address served
    url, token = view.live.address, f"token={view.live.token}"
    assert page_url == f"{url}?{token}"
    try:
        kind, page = _get(page_url)
        assert kind.startswith("text/html") and b"view?" in page and b"cdn.bokeh.org" not in page
        x0, y0, x1, y1 = view.live.extent
        kind, body = _get(f"{url}view?x0={x0}&x1={x1}&y0={y0}&y1={y1}&{token}")
        shown = json.loads(body)
        assert shown["in_view"] == shown["total"] == shown["drawn"] == 376
        assert len(_decoded(shown["arrays"]["map_x"])) == len(shown["points"]["object_id"]) == 376
        assert shown["density"]["url"] == []  # few enough: every point exactly, no density
        assert {"ring", "outlier_score"} <= set(shown["arrays"])
        first = shown["points"]["object_id"][0]
        kind, tile = _get(f"{url}thumb?id={urllib.parse.quote(first)}&{token}")
        assert kind == "image/png" and tile.startswith(b"\x89PNG") and tile != placeholder_png()
        kind, body = _get(f"{url}neighbours?id={urllib.parse.quote(first)}&{token}")
        near = json.loads(body)
        assert len(near["object_id"]) == 9 and near["object_id"][0] == first
        # the find box asks where an object is: its place on the map, or 404 with the reason
        kind, body = _get(f"{url}find?id={urllib.parse.quote(first)}&{token}")
        found = json.loads(body)
        row = shown["points"]["object_id"].index(first)
        assert (found["object_id"], found["x"], found["y"]) == (
            first,
            float(_decoded(shown["arrays"]["map_x"])[row]),
            float(_decoded(shown["arrays"]["map_y"])[row]),
        )
        assert 0 < found["width"] < x1 - x0
        with pytest.raises(urllib.error.HTTPError, match="404") as missing:
            _get(f"{url}find?id=no-such-object&{token}")
        assert "no object no-such-object in this map (376 objects)" in missing.value.read().decode()
        request = urllib.request.Request(
            f"{url}selection?{token}",
            data=json.dumps({"object_id": shown["points"]["object_id"][:5]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()
        selected = view.selected()
        assert selected["object_id"].tolist() == shown["points"]["object_id"][:5]
        assert {"ring", "outlier_score", "map_x", "map_y"} <= set(selected.columns)
        with pytest.raises(urllib.error.HTTPError, match="400"):
            _get(f"{url}view?x0=1&x1=0&y0=0&y1=1&{token}")
    finally:
        view.live.stop()


def test_selection_posts_are_accepted_from_the_map_page_only(tmp_path):
    """Another site's page, a plain form, or a bad Content-Length cannot post a selection (the server is
    on 127.0.0.1, which every page in the user's browser can reach)."""
    import http.client

    from hyrax.config import ConfigManager
    from hyrax.visualize.live import LiveMap

    write_map_run(tmp_path, np.random.default_rng(0).normal(size=(50, 2)))
    live = LiveMap(ConfigManager().config, tmp_path)
    live.start(0)
    url, port = live.address, live.server.server_address[1]
    body = json.dumps({"object_id": ["p1", "p2"]}).encode()

    def post(headers, data=body):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest("POST", f"/selection?token={live.token}")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(data)
        response = connection.getresponse()
        answer = response.status, response.read()
        connection.close()
        return answer

    try:
        same = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Origin": url.rstrip("/"),
        }
        assert post(same)[0] == 200 and live.selected()["object_id"].tolist() == ["p1", "p2"]
        status, answer = post({**same, "Origin": "http://evil.example"})
        assert status == 403 and b"map page only" in answer
        assert post({**same, "Content-Type": "text/plain"})[0] == 415
        assert post({**same, "Content-Length": "lots"})[0] == 411
        assert post({**same, "Content-Length": str(2**40)}, data=b"")[0] == 413
        assert post(same)[0] == 200  # and the server still answers
    finally:
        live.stop()


def test_live_map_shows_exact_points_when_zoomed_in(tmp_path):
    from hyrax.config import ConfigManager
    from hyrax.visualize.live import LiveMap

    write_map_run(tmp_path, np.random.default_rng(0).normal(size=(5000, 2)))
    live = LiveMap(ConfigManager().config, tmp_path, max_points=1000)
    x0, y0, x1, y1 = live.extent
    whole = live.view(x0, x1, y0, y1)
    assert whole["in_view"] == 5000 and len(_decoded(whole["arrays"]["map_x"])) == 1000  # a sample ...
    assert whole["density"]["url"]  # ... over the density of all
    zoomed = live.view(0.0, 0.5, 0.0, 0.5)
    inside = int(((live.x >= 0) & (live.x <= 0.5) & (live.y >= 0) & (live.y <= 0.5)).sum())
    assert 0 < inside < 1000 and zoomed["drawn"] == zoomed["in_view"] == inside
    assert np.allclose(
        np.sort(_decoded(zoomed["arrays"]["map_x"])), np.sort(live.x[live.inside(0, 0.5, 0, 0.5)])
    )
    assert zoomed["density"]["url"] == []  # every point in view drawn: no density needed
    png = live.density_png(x0, x1, y0, y1)
    from PIL import Image

    image = np.asarray(Image.open(__import__("io").BytesIO(png)))
    assert image.shape == (400, 400, 4) and (image[..., 3] > 0).sum() > 1000


def test_a_box_or_lasso_selects_every_object_inside_it_drawn_or_not(tmp_path):
    from hyrax.config import ConfigManager
    from hyrax.visualize.live import LiveMap, inside_polygon

    write_map_run(tmp_path, np.random.default_rng(0).normal(size=(5000, 2)))
    live = LiveMap(ConfigManager().config, tmp_path, max_points=1000)  # 1,000 drawn of 5,000
    box = {"type": "rect", "x0": 0.5, "x1": -0.5, "y0": -0.5, "y1": 0.5}  # corners in either order
    count = live.select(geometry=box, seq=1)
    expected = (np.abs(live.x) <= 0.5) & (np.abs(live.y) <= 0.5)
    drawn = live.initial().coordinates
    drawn_inside = int((np.abs(drawn) <= 0.5).all(axis=1).sum())
    assert count == expected.sum() > drawn_inside  # all of them, not only the drawn ones
    frame = live.selected()
    assert sorted(frame["object_id"]) == sorted(live.source.ids(np.flatnonzero(expected)))
    triangle = {"type": "poly", "x": [0, 2, 0], "y": [0, 0, 2]}
    live.select(geometry=triangle, seq=2)
    expected = (live.x > 0) & (live.y > 0) & (live.x + live.y < 2)
    assert set(live.selected()["object_id"]) == set(live.source.ids(np.flatnonzero(expected)))
    live.select(object_ids=["p3", "p1"], seq=1)  # an older selection arriving late changes nothing
    assert len(live.selected()) == expected.sum()
    live.select(object_ids=["p3", "p1"], seq=3)  # a tap: those objects
    assert live.selected()["object_id"].tolist() == ["p3", "p1"]
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    points = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, -0.1], [0.99, 0.01]])
    assert inside_polygon(points[:, 0], points[:, 1], square[:, 0], square[:, 1]).tolist() == [
        True,
        False,
        False,
        True,
    ]


def test_large_maps_draw_a_sample_over_the_density_of_all(tmp_path):
    from hyrax.config import ConfigManager
    from hyrax.visualize.mapdata import gather
    from hyrax.visualize.page import build_layout, page_html

    write_map_run(tmp_path, np.random.default_rng(0).normal(size=(5000, 2)))
    data = gather(ConfigManager().config, tmp_path, max_points=1000)
    assert len(data.ids) == 1000 and data.total == 5000
    assert data.density.sum() == 5000  # every object counted, not only the drawn ones
    html = page_html(build_layout(data))
    assert "density of all; points: a sample" in html and "1,000 of 5,000 objects" in html


def test_three_component_maps_get_a_turnable_3d_view(tmp_path):
    from hyrax.config import ConfigManager
    from hyrax.visualize.live import LiveMap
    from hyrax.visualize.mapdata import VIEW_ANGLES, gather, project
    from hyrax.visualize.page import build_layout, page_html

    xyz = np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32)
    write_map_run(tmp_path, xyz)
    data = gather(ConfigManager().config, tmp_path)
    assert data.coordinates.shape == (300, 3)
    html = page_html(build_layout(data))
    assert "in 3-D (components 1-3)" in html and "azimuth (degrees)" in html
    px, py = project(xyz, *VIEW_ANGLES)
    top_x, top_y = project(xyz, 0, 90)  # from straight above: x and (minus) y, centred
    assert np.allclose(top_x, xyz[:, 0] - xyz[:, 0].mean(), atol=1e-5)
    assert np.allclose(top_y, -(xyz[:, 1] - xyz[:, 1].mean()), atol=1e-5)
    live = LiveMap(ConfigManager().config, tmp_path)
    x0, y0, x1, y1 = live.extent
    assert "map_z" in live.view(x0, x1, y0, y1)["arrays"]  # the page re-projects what the server sends


def test_a_map_or_scores_of_changed_results_are_not_shown_as_current(tmp_path, caplog):
    """Issue 15: a map records the results version it was made from, outlier scores theirs; when the
    infer results move on, the map says so and stops colouring by the old scores."""
    import tomlkit

    from hyrax.results.store import ResultDataset, ResultWriter
    from hyrax.vector_db.outliers import score_run
    from hyrax.visualize.source import MapSource

    infer = tmp_path / "infer"
    vectors = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with ResultWriter(infer, shape=(4,)) as writer:
        writer.write(np.char.add("p", np.arange(50).astype(str)), vectors)
    score_run(infer, k=3)
    made = ResultDataset(data_location=infer)
    reduce = write_map_run(tmp_path / "map", vectors[:, :2])
    source = {"infer_run": str(infer), "results_rows": len(made), "results_version": made.version}
    (reduce / "source.toml").write_text(tomlkit.dumps(source))
    assert MapSource({}, reduce).has_scores()
    with ResultWriter(infer, shape=(4,), resume=True) as writer:
        writer.write(np.array(["late"]), np.zeros((1, 4), np.float32))
    caplog.set_level("WARNING")
    view = MapSource({}, reduce)
    assert "was made from another version of the results" in caplog.text
    assert not view.has_scores() and "outlier_score" not in view.columns()
    assert "results_rows 50 -> 51" in caplog.text
