"""The atlas in the map's pages, and the map exported as static files (issue 30, items 1 and 2).

Default suite: ``hyrax visualize --export DIR`` (and ``h.visualize().export(DIR)``) writes a folder that
``python -m http.server`` (a real one, in a subprocess on 127.0.0.1) serves whole: the page, the atlas,
the points of every zoom level (each object once at the deepest one), each object's record found by the
page's shard hash, with its exact nearest neighbours.
``-m slow`` (Chromium): the live map and the exported folder zoomed from the density view through three
atlas levels to single objects, each drawn tile where its cells' objects are on the map and its pixels
where the tile's cells are; a click on a thumbnail shows that object (table, neighbours) and labels it;
the exported folder's search by object id. Screenshots in test-artifacts/.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

GALAXIES = {"dataset_class": "DecalsRingsDataset"}


def galaxy_map(base: Path, algorithm: str = "pca", atlas: bool = True):
    """(Hyrax, the reduce_dimensions run) of the bundled galaxies: their images' first 32 principal
    components as the inference vectors, ``reduce_dimensions`` (``algorithm``) to 2-D, and its atlas."""
    from hyrax import Hyrax
    from hyrax.datasets.provider import DataProvider
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultWriter

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(base / "results"))
    h.set_config("data_request.infer.galaxies", GALAXIES)
    h.set_config("reduce_dimensions.umap.fit_sample_size", 376)
    provider = DataProvider(h.config, "infer")
    ids = provider.ids_at(np.arange(len(provider)))
    pixels = provider.datasets[provider.primary].images.reshape(len(ids), -1).astype(np.float32) / 255
    pixels -= pixels.mean(axis=0)
    u, s, _ = np.linalg.svd(pixels, full_matrices=False)
    infer = base / "infer"
    with ResultWriter(infer, (32,), "float32") as writer:
        writer.write(np.asarray(ids).astype(str), (u[:, :32] * s[:32]).astype(np.float32))
    RunDir(infer).write_config(h.config)
    run = Path(h.reduce_dimensions(algorithm=algorithm, input_dir=str(infer)).data_location)
    if atlas:
        h.atlas(input_dir=str(run))
    return h, run


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory):
    return galaxy_map(tmp_path_factory.mktemp("atlas_pages"))


@contextlib.contextmanager
def static_server(folder: Path):
    """``python -m http.server`` on 127.0.0.1 serving ``folder``: its address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(folder)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(address, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        server.wait(10)


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A map of a radio catalog (300 objects; its inference vectors are its map coordinates) exported
    through the CLI, as a user types it."""
    from hyrax.cli import main
    from tests.visualize.conftest import radio_catalog, write_catalog_map

    base = tmp_path_factory.mktemp("export")
    catalog = radio_catalog(base / "catalog.csv")
    entry = {"catalog": {"dataset_class": "HyraxCSVDataset", "data_location": str(catalog)}}
    coordinates = np.random.default_rng(7).normal(size=(300, 2)).astype(np.float32)
    config, run = write_catalog_map(base, coordinates, entry)
    folder = base / "radio_map"
    (base / "hyrax.toml").write_text('[visualize]\ncolor_column = "fr_class"\nexport_neighbours = 5\n')
    command = ["visualize", "-c", str(base / "hyrax.toml"), "--input-dir", str(run), "--export", str(folder)]
    assert main(command) == 0
    return config, run, coordinates, folder


def test_the_exported_folder_is_served_whole_by_a_static_server(exported):
    from hyrax.visualize.export import shard_of

    config, run, coordinates, folder = exported
    described = json.loads((folder / "export.json").read_text())
    assert described["format"] == "hyrax-export/1" and described["objects"] == 300
    assert described["color"] == "fr_class" and not described["atlas"]  # no atlas built: points only
    with static_server(folder) as address:
        with urllib.request.urlopen(address, timeout=10) as page:
            html = page.read().decode()
        assert "Bokeh" in html and "cdn.bokeh.org" not in html and "exportOf" in html  # nothing from the net
        first = _get_json(address + "points/0/0/0.json")
        shard = shard_of("J0000", described["shards"])
        record = _get_json(address + f"objects/{shard}.json")["J0000"]
        with urllib.request.urlopen(address + record["thumbnail"], timeout=10) as thumbnail:
            assert thumbnail.read().startswith(b"\x89PNG")
    assert first["count"] == 300 and "J0000" in first["object_id"] and "map_colour" in first
    # the record: where the object is, its catalog columns, its 5 nearest neighbours (itself first)
    distances = np.linalg.norm(coordinates - coordinates[0], axis=1)
    nearest = np.argsort(distances)[:6]
    assert record["neighbours"]["object_id"] == [f"J{i:04d}" for i in nearest]
    np.testing.assert_allclose(record["neighbours"]["distance"], distances[nearest], rtol=1e-4, atol=1e-5)
    assert record["columns"]["z"] == 0.154 and record["columns"]["fr_class"] in (
        "FRI",
        "FRII",
        "compact",
        "bent",
    )
    assert (record["x"], record["y"]) == pytest.approx(tuple(coordinates[0]), abs=1e-6)


def test_the_exported_points_are_each_tiles_first_objects_and_every_one_at_the_deepest_level(
    exported, tmp_path
):
    """At most per_tile points in a tile's file, the tile's objects of lowest sampling priority (those the
    live map draws first), every object in its own tile, and all of them at the deepest level."""
    from hyrax.visualize.export import Exporter
    from hyrax.visualize.source import MapSource

    config, run, coordinates, _ = exported
    source = MapSource(config, run)
    folder = Exporter(config, source, tmp_path / "points", neighbours=0, per_tile=40).run()
    described = json.loads((folder / "export.json").read_text())
    assert described["points"] == {"max_level": 2, "per_tile": 40}  # 300 objects: 4**2 tiles of ~19
    priority = {f"J{i:04d}": source.priority[i] for i in range(300)}
    x0, _, x1, y1 = described["extent"]
    for z in range(3):
        seen, size = [], (x1 - x0) / 2**z
        members: dict[tuple[int, int], list[str]] = {}
        for i, (x, y) in enumerate(coordinates.tolist()):
            key = (min(int((x - x0) // size), 2**z - 1), min(int((y1 - y) // size), 2**z - 1))
            members.setdefault(key, []).append(f"J{i:04d}")
        for path in (folder / "points" / str(z)).glob("*/*.json"):
            tile = json.loads(path.read_text())
            own = members[tile["tx"], tile["ty"]]  # the tile's objects, by the format's rule
            first = sorted(own, key=priority.get)[: 40 if z < 2 else None]
            assert sorted(tile["object_id"]) == sorted(first) and tile["count"] == len(own)
            for object_id, x, y in zip(tile["object_id"], tile["x"], tile["y"], strict=True):
                assert (x, y) == pytest.approx(tuple(coordinates[int(object_id[1:])]), abs=1e-5)
            seen += tile["object_id"]
        assert len(seen) == len(set(seen)) and (z < 2 or len(seen) == 300)


def test_an_export_refuses_a_folder_of_other_files(exported, tmp_path):
    from hyrax.errors import ResultsError
    from hyrax.visualize.view import MapView

    config, run, _, _ = exported
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(ResultsError, match="not a map export; name a new or empty folder"):
        MapView(config, run).export(tmp_path, neighbours=0)
    assert (tmp_path / "thesis.tex").read_text() == "mine"


# -- in Chromium (-m slow) -------------------------------------------------------------------------------

PLOT = "[...Bokeh.documents[0].all_models].find(m => m.x_range && m.y_range && m.renderers)"
MODEL = "[...Bokeh.documents[0].all_models].find(m => m.name === '{}')"


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    from tests.visualize.test_browser import ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.fail(
            "Chromium is not installed (apt-get install chromium); see tests/visualize/test_browser.py"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.evaluate("() => performance.setResourceTimingBufferSize(100000)")  # _zoom waits on the entries
    page.wait_for_function(
        f"() => window.Bokeh && Bokeh.documents.length && {MODEL.format('points')}", timeout=30_000
    )
    return page, errors


def _zoom(page, centre: tuple[float, float], width: float) -> None:
    """Show a square of the map ``width`` wide around ``centre`` and wait for the atlas to draw it."""
    before = page.evaluate("() => window._hyrax_tiles_drawn || 0")
    page.evaluate(
        f"""([x, y, w]) => {{ const plot = {PLOT};
        plot.x_range.setv({{start: x - w / 2, end: x + w / 2}}); plot.y_range.setv({{start: y - w / 2, end: y + w / 2}}); }}""",
        [centre[0], centre[1], width],
    )
    page.wait_for_function(f"() => (window._hyrax_tiles_drawn || 0) > {before}", timeout=15_000)
    page.wait_for_timeout(300)  # the debounced point requests that follow redraw the single objects
    _wait_for_images(page)


def _wait_for_images(page) -> None:
    """Until every tile and single object's image drawn has arrived, and a frame has been drawn."""
    urls = page.evaluate(
        f"() => [...{MODEL.format('atlas_tiles')}.data.url, ...{MODEL.format('object_images')}.data.url]"
    )
    # every image drawn has arrived, then a frame has been drawn with it
    page.wait_for_function(
        "urls => urls.every(u => u.startsWith('data:') || performance.getEntriesByType('resource').some(e => e.name.endsWith(u.split('/').slice(-3).join('/')) && e.responseEnd > 0))",
        arg=urls,
        timeout=15_000,
    )
    page.wait_for_timeout(500)


def _wait_for_cell(page, text: str, timeout: float = 15) -> None:
    """Until a cell of the selection's table shows ``text`` (the table lies in Bokeh's shadow DOM, which
    the locator reaches and a page script's querySelectorAll does not)."""
    deadline = time.monotonic() + timeout
    while text not in (cells := page.locator(".slick-cell").all_inner_texts()):
        assert time.monotonic() < deadline, f"the selection's table shows {cells}, not {text}"
        page.wait_for_timeout(100)


def _level_width(manifest: dict, z: int, cell_px: float = 64) -> float:
    """The width of a view whose level-z cells are cell_px wide in the atlas page's square frame."""
    from hyrax.visualize.page import ATLAS_FRAME_PX

    x0, _, x1, _ = manifest["extent"]
    return (x1 - x0) / 2**z / manifest["cells"] * ATLAS_FRAME_PX / cell_px


def _to_screen(page, points: list[list[float]]) -> np.ndarray:
    """Page pixels of map points, through the plot's own scales."""
    return np.asarray(
        page.evaluate(
            f"""points => {{ const view = Bokeh.index.find_one({PLOT});
            const r = view.canvas_view.el.getBoundingClientRect();
            return points.map(([x, y]) => [r.left + view.frame.x_scale.compute(x), r.top + view.frame.y_scale.compute(y)]); }}""",
            points,
        )
    )


def _gray(picture, box) -> np.ndarray:
    """The middle of a box of a picture as an 8x8 grey vector, centred and scaled."""
    from PIL import Image

    left, top, right, bottom = box
    inset = (right - left) * 0.2
    part = picture.crop((left + inset, top + inset, right - inset, bottom - inset)).convert("L")
    values = np.asarray(part.resize((8, 8), Image.BILINEAR), dtype=np.float64).ravel()
    return (values - values.mean()) / (values.std() + 1e-9)


def check_tiles_drawn(page, folder: Path, where: dict, z: int) -> int:
    """Each drawn tile is the file of its place (level z), each of its cells' objects lies inside the
    cell's box on the map, and what the browser shows in each cell is that cell's image. Returns how
    many cells were checked on screen."""
    import io

    from PIL import Image

    manifest = json.loads((folder / "manifest.json").read_text())
    drawn = page.evaluate(f"() => {{ const d = {MODEL.format('atlas_tiles')}.data; return {{...d}}; }}")
    assert drawn["url"] and set(drawn["z"]) == {z}
    x0, _, x1, y1 = manifest["extent"]
    size, cells, px = (x1 - x0) / 2**z, manifest["cells"], manifest["cell_px"]
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    frame = _to_screen(
        page,
        [
            [page.evaluate(f"() => {PLOT}.x_range.start"), page.evaluate(f"() => {PLOT}.y_range.end")],
            [page.evaluate(f"() => {PLOT}.x_range.end"), page.evaluate(f"() => {PLOT}.y_range.start")],
        ],
    )
    seen, shown = [], []
    for url, x, y, w, h, tx, ty in zip(
        *(drawn[k] for k in ("url", "x", "y", "w", "h", "tx", "ty")), strict=True
    ):
        name = f"{z}/{tx}/{ty}.{manifest['image_format']}"
        if url.startswith("data:"):  # the standalone file's embedded level: the tile file's bytes
            assert base64.b64decode(url.split(",", 1)[1]) == (folder / name).read_bytes()
        else:
            assert url.split("?")[0].endswith(f"atlas/{name}")
        assert (x, y, w, h) == pytest.approx(
            (x0 + tx * size, y1 - (ty + 1) * size, size, size), rel=1e-9, abs=1e-9
        )
        tile = json.loads((folder / str(z) / str(tx) / f"{ty}.json").read_text())
        image = Image.open(folder / str(z) / str(tx) / f"{ty}.{manifest['image_format']}").convert("RGB")
        for col, row, object_id in zip(tile["col"], tile["row"], tile["object_id"], strict=True):
            left, top = x + col * w / cells, y + h - row * h / cells
            ox, oy = where[object_id]
            assert left <= ox < left + w / cells and top - h / cells < oy <= top, (
                object_id,
                z,
                tx,
                ty,
                col,
                row,
            )
            corners = _to_screen(page, [[left, top], [left + w / cells, top - h / cells]])
            (a, b), (c, d) = corners
            if a >= frame[0][0] and b >= frame[0][1] and c <= frame[1][0] and d <= frame[1][1]:
                seen.append(_gray(shot, (a, b, c, d)))
                shown.append(_gray(image, (col * px, row * px, (col + 1) * px, (row + 1) * px)))
    assert len(seen) >= 8, f"only {len(seen)} cells in view at level {z}"
    match = np.asarray(seen) @ np.asarray(shown).T / 64  # correlation of every seen cell with every image
    own = np.diag(match)
    assert (match.argmax(axis=1) == np.arange(len(seen))).mean() >= 0.9 and np.median(own) > 0.8, own
    return len(seen)


def _map_points(run: Path) -> dict[str, tuple[float, float]]:
    from hyrax.results.store import ResultDataset

    table = ResultDataset(data_location=run)
    ids, xy = table.take(np.arange(len(table)))
    return {str(i): (float(p[0]), float(p[1])) for i, p in zip(ids, xy.reshape(len(ids), -1), strict=True)}


def _centre(where: dict) -> tuple[float, float]:
    """The object nearest the middle of the map: a view around it has tiles at every level."""
    points = np.asarray(list(where.values()))
    return tuple(points[np.argmin(np.linalg.norm(points - np.median(points, axis=0), axis=1))])


def _cell_on_screen(page, folder: Path, z: int) -> tuple[str, np.ndarray]:
    """A cell of a drawn tile well inside the view: its object id and its centre on the page."""
    manifest = json.loads((folder / "manifest.json").read_text())
    drawn = page.evaluate(f"() => {{ const d = {MODEL.format('atlas_tiles')}.data; return {{...d}}; }}")
    view = page.evaluate(
        f"() => [{PLOT}.x_range.start, {PLOT}.x_range.end, {PLOT}.y_range.start, {PLOT}.y_range.end]"
    )
    for x, y, w, h, tx, ty in zip(*(drawn[k] for k in ("x", "y", "w", "h", "tx", "ty")), strict=True):
        tile = json.loads((folder / str(z) / str(tx) / f"{ty}.json").read_text())
        step = w / manifest["cells"]
        for col, row, object_id in zip(tile["col"], tile["row"], tile["object_id"], strict=True):
            cx, cy = x + (col + 0.5) * step, y + h - (row + 0.5) * step
            inside = view[0] + step < cx < view[1] - step and view[2] + step < cy < view[3] - step
            if inside:
                return object_id, _to_screen(page, [[cx, cy]])[0]
    raise AssertionError("no cell of a drawn tile inside the view")


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.slow  # ~60 s: Chromium, the galaxies' map and atlas, three levels checked pixel by pixel
def test_the_live_map_zooms_through_the_atlas_and_a_thumbnail_shows_its_object(chromium, galaxies):
    from tests.visualize.test_browser import _loaded_images

    h, run = galaxies
    folder = run / "atlas"
    manifest = json.loads((folder / "manifest.json").read_text())
    where = _map_points(run)
    view = h.visualize(input_dir=str(run))
    page, errors = _open(chromium, view.serve(0))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        centre = _centre(where)
        x0, _, x1, _ = manifest["extent"]
        _zoom(page, centre, x1 - x0)  # the whole square: the density view, dots and no tiles
        assert page.evaluate("() => window._hyrax_atlas_level") == -1
        assert page.evaluate(f"() => {MODEL.format('atlas_tiles')}.data.url.length") == 0
        page.screenshot(path=str(ARTIFACTS / "atlas_density.png"))
        for z in range(manifest["max_level"] + 1):
            _zoom(page, centre, _level_width(manifest, z))
            assert page.evaluate("() => window._hyrax_atlas_level") == z
            check_tiles_drawn(page, folder, where, z)
            page.screenshot(path=str(ARTIFACTS / f"atlas_level_{z}.png"))
        # past the deepest level: each object's own thumbnail, at its place
        _zoom(page, centre, _level_width(manifest, manifest["max_level"], 200))
        assert page.evaluate("() => window._hyrax_atlas_level") == manifest["max_level"] + 1
        single = page.evaluate(
            f"() => {{ const d = {MODEL.format('object_images')}.data; return [d.url, d.x, d.y]; }}"
        )
        assert single[0]
        for url, x, y in zip(*single, strict=True):
            object_id = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["id"][0]
            assert (x, y) == pytest.approx(where[object_id], abs=1e-4)
        page.screenshot(path=str(ARTIFACTS / "atlas_objects.png"))
        # a click on a thumbnail of level 1: its object is selected, its neighbours shown, and labelled
        _zoom(page, centre, _level_width(manifest, 1))
        object_id, (px, py) = _cell_on_screen(page, folder, 1)
        page.mouse.click(px, py)
        page.wait_for_function("id => window._hyrax_shown === id", arg=object_id, timeout=15_000)
        page.wait_for_selector("img.hyrax-neighbour", timeout=15_000)
        assert _loaded_images(page, "img.hyrax-neighbour") == 9  # the object and its 8 neighbours
        assert object_id in page.locator(".slick-cell").all_inner_texts()  # in the selection's table
        page.get_by_role("button", name="Interesting (1)").click()
        page.wait_for_function("() => (window._hyrax_labelled || 0) >= 1", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "atlas_clicked.png"))
        labels = h.labels().set_index("object_id")
        assert labels.loc[object_id, "label"] == 1 and len(labels) == 1
        # the find box: the server says where the object is, the map centres on it and selects it
        wanted = sorted(where)[100]
        page.fill("input[placeholder='object id']", wanted)
        page.press("input[placeholder='object id']", "Enter")  # one find (a click after it would be a second)
        page.wait_for_function("id => window._hyrax_shown === id", arg=wanted, timeout=15_000)
        centre = page.evaluate(
            f"() => [({PLOT}.x_range.start + {PLOT}.x_range.end) / 2, ({PLOT}.y_range.start + {PLOT}.y_range.end) / 2]"
        )
        assert centre == pytest.approx(where[wanted], abs=1e-3)
        # its neighbours, itself first, and its row in the selection's table
        page.wait_for_selector(f"figcaption:has-text('{wanted}')", timeout=15_000)
        _wait_for_cell(page, wanted)
        page.fill("input[placeholder='object id']", "no-such-object")
        page.get_by_role("button", name="Find").click()
        page.wait_for_selector("text=no object no-such-object in this map", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "atlas_live_find.png"))
        assert not errors, errors
    finally:
        page.close()
        view.live.stop()


@pytest.mark.slow  # ~40 s: the galaxies' export, python -m http.server, Chromium
def test_the_exported_atlas_zooms_and_finds_an_object_and_its_neighbours(chromium, galaxies, tmp_path):
    from tests.visualize.test_browser import _loaded_images

    h, run = galaxies
    folder = h.visualize(input_dir=str(run), color_column="ring").export(tmp_path / "rings", neighbours=8)
    manifest = json.loads((folder / "atlas" / "manifest.json").read_text())
    where = _map_points(run)
    with static_server(folder) as address:
        page, errors = _open(chromium, address)
        try:
            for z in range(manifest["max_level"] + 1):
                _zoom(page, _centre(where), _level_width(manifest, z))
                check_tiles_drawn(page, folder / "atlas", where, z)
                page.screenshot(path=str(ARTIFACTS / f"export_level_{z}.png"))
            wanted = sorted(where)[100]
            page.fill("input[placeholder='object id']", wanted)
            page.get_by_role("button", name="Find").click()
            page.wait_for_function("id => window._hyrax_shown === id", arg=wanted, timeout=15_000)
            page.wait_for_selector("img.hyrax-neighbour", timeout=15_000)
            assert _loaded_images(page, "img.hyrax-neighbour") == 9
            captions = page.locator("img.hyrax-neighbour + figcaption").all_inner_texts()
            assert captions[0].split()[0] == wanted  # the object first, then its 8 nearest
            _wait_for_cell(page, wanted)  # its row in the selection's table
            centre = page.evaluate(
                f"() => [({PLOT}.x_range.start + {PLOT}.x_range.end) / 2, ({PLOT}.y_range.start + {PLOT}.y_range.end) / 2]"
            )
            assert centre == pytest.approx(where[wanted], abs=1e-3)  # the map centred on it
            page.wait_for_timeout(300)
            _wait_for_images(page)  # the single objects around it
            page.screenshot(path=str(ARTIFACTS / "export_search.png"))
            assert not errors, errors
        finally:
            page.close()


@pytest.mark.slow  # ~40 s: Chromium and the galaxies' map and atlas
def test_the_standalone_file_zooms_through_its_embedded_atlas_levels(chromium, galaxies, tmp_path):
    """``hyrax visualize --html``: a file that fetches nothing carries the atlas's coarser levels (the
    galaxies' three fit its budget) and zooms through them; a click on a thumbnail selects its object
    and shows the neighbours the file carries."""
    from tests.visualize.test_browser import _loaded_images

    h, run = galaxies
    path = h.visualize(input_dir=str(run)).save(tmp_path / "rings.html")
    manifest = json.loads((run / "atlas" / "manifest.json").read_text())
    where = _map_points(run)
    page, errors = _open(chromium, path.as_uri())
    try:
        for z in range(manifest["max_level"] + 1):
            _zoom(page, _centre(where), _level_width(manifest, z))
            assert page.evaluate("() => window._hyrax_atlas_level") == z
            check_tiles_drawn(page, run / "atlas", where, z)
        page.screenshot(path=str(ARTIFACTS / "standalone_level_2.png"))
        object_id, (px, py) = _cell_on_screen(page, run / "atlas", manifest["max_level"])
        page.mouse.click(px, py)
        page.wait_for_function("id => window._hyrax_shown === id", arg=object_id, timeout=15_000)
        page.wait_for_selector("img.hyrax-neighbour", timeout=15_000)
        assert _loaded_images(page, "img.hyrax-neighbour") == 9
        assert not errors, errors
    finally:
        page.close()
