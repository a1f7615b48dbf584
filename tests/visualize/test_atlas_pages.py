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

import contextlib
import json
import socket
import subprocess
import sys
import time
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


def test_the_exported_points_hold_every_object_in_its_tile_at_every_level(exported):
    config, run, coordinates, folder = exported
    described = json.loads((folder / "export.json").read_text())
    where = {f"J{i:04d}": tuple(p) for i, p in enumerate(coordinates.tolist())}
    x0, _, x1, y1 = described["extent"]
    for z in range(described["points"]["max_level"] + 1):
        seen, size = [], (x1 - x0) / 2**z
        for path in (folder / "points" / str(z)).glob("*/*.json"):
            tile = json.loads(path.read_text())
            for object_id, x, y in zip(tile["object_id"], tile["x"], tile["y"], strict=True):
                assert (x, y) == pytest.approx(where[object_id], abs=1e-5)
                assert min(int((x - x0) // size), 2**z - 1) == tile["tx"]  # in its own tile
                assert min(int((y1 - y) // size), 2**z - 1) == tile["ty"]
            seen += tile["object_id"]
        assert sorted(seen) == sorted(where)  # 300 objects: under per_tile, every one at every level


def test_an_export_refuses_a_folder_of_other_files(exported, tmp_path):
    from hyrax.errors import ResultsError
    from hyrax.visualize.view import MapView

    config, run, _, _ = exported
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(ResultsError, match="not a map export; name a new or empty folder"):
        MapView(config, run).export(tmp_path, neighbours=0)
    assert (tmp_path / "thesis.tex").read_text() == "mine"
