"""The atlas (hyrax.visualize.atlas): a reduce_dimensions map of the bundled galaxies tiled with their images.

Default suite: the tiles' cells against the map (every representative inside its cell's box, counts,
the typical member, coarser representatives from finer ones), a column's top, the build in small chunks
equal to the build in one (memory bounded by the chunk, not the map), a stopped build finished equal to
an uninterrupted one, and the live server's atlas routes behind its token and Host checks.
``-m slow``: a build killed by SIGKILL at a fault point (hyrax.faults) and rerun, equal to an
uninterrupted one; the build's memory not growing with the map's size.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory):
    """(Hyrax, the reduce_dimensions run): PCA of random vectors of the bundled galaxies."""
    from hyrax import Hyrax
    from hyrax.datasets.provider import DataProvider
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultWriter

    base = tmp_path_factory.mktemp("atlas")
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(base / "results"))
    h.set_config("data_request.infer.galaxies", {"dataset_class": "DecalsRingsDataset"})
    ids = DataProvider(h.config, "infer").ids_at(np.arange(376))
    infer = base / "infer"
    vectors = np.random.default_rng(0).normal(size=(len(ids), 8)).astype(np.float32)
    with ResultWriter(infer, (8,), "float32") as writer:
        writer.write(np.asarray(ids).astype(str), vectors)
    RunDir(infer).write_config(h.config)
    reduced = h.reduce_dimensions(algorithm="pca", input_dir=str(infer))
    return h, Path(reduced.data_location)


def _map(run: Path) -> dict[str, tuple[float, float]]:
    from hyrax.results.store import ResultDataset

    ids, xy = ResultDataset(data_location=run).take(np.arange(376))
    return {str(i): (float(p[0]), float(p[1])) for i, p in zip(ids, xy.reshape(len(ids), -1), strict=True)}


def _cell_box(manifest: dict, z: int, tx: int, ty: int, col: int, row: int) -> tuple[float, ...]:
    """The cell's box as the format's documentation defines it (written here independently)."""
    x0, y0, x1, y1 = manifest["extent"]
    size = (x1 - x0) / 2**z / manifest["cells"]
    left = x0 + (tx * manifest["cells"] + col) * size
    top = y1 - (ty * manifest["cells"] + row) * size
    return left, top - size, left + size, top


def _members(manifest: dict, points: dict, z: int) -> dict[tuple[int, int], list[str]]:
    """Every object's global cell at level z, by the documented rule."""
    x0, _, x1, y1 = manifest["extent"]
    n = 2**z * manifest["cells"]
    size = (x1 - x0) / n
    cells: dict[tuple[int, int], list[str]] = {}
    for object_id, (x, y) in points.items():
        key = (min(int((x - x0) // size), n - 1), min(int((y1 - y) // size), n - 1))
        cells.setdefault(key, []).append(object_id)
    return cells


def test_every_cell_shows_an_object_inside_it_typical_and_from_the_finer_level(galaxies):
    from PIL import Image

    h, run = galaxies
    atlas = h.atlas(input_dir=str(run))
    manifest, points = atlas.manifest, _map(run)
    assert manifest["complete"] and manifest["format"] == "hyrax-atlas/1" and manifest["max_level"] == 2
    x0, y0, x1, y1 = manifest["extent"]
    assert x1 - x0 == pytest.approx(y1 - y0)  # square
    side = manifest["cell_px"]
    finer_reps: dict[int, set[str]] = {}
    for z in range(manifest["max_level"], -1, -1):  # deepest first: coarser ones check against it
        members = _members(manifest, points, z)
        reps, shown = set(), 0
        assert len(atlas.tiles(z)) == manifest["levels"][z]["tiles"]
        for tx, ty in atlas.tiles(z):
            cells = atlas.cells(z, tx, ty)
            assert cells["box"] == pytest.approx(atlas.box(z, tx, ty))
            alpha = np.asarray(Image.open(atlas.image_path(z, tx, ty)))[..., 3]
            assert alpha.shape == (manifest["tile_px"],) * 2
            for col, row, object_id, count in zip(
                cells["col"], cells["row"], cells["object_id"], cells["count"], strict=True
            ):
                left, bottom, right, top = _cell_box(manifest, z, tx, ty, col, row)
                x, y = points[object_id]
                assert left - 1e-9 <= x <= right + 1e-9 and bottom - 1e-9 <= y <= top + 1e-9, (z, object_id)
                gx, gy = tx * manifest["cells"] + col, ty * manifest["cells"] + row
                assert count == len(members[gx, gy])
                if z == manifest["max_level"]:  # the member nearest the members' centroid
                    mine = np.array([points[i] for i in members[gx, gy]])
                    distance = ((mine - mine.mean(axis=0)) ** 2).sum(axis=1)
                    assert distance[members[gx, gy].index(object_id)] == pytest.approx(
                        distance.min(), abs=1e-9
                    )
                else:  # one of the finer level's representatives
                    assert object_id in finer_reps[z + 1]
                assert alpha[row * side : (row + 1) * side, col * side : (col + 1) * side].min() == 255
                reps.add(object_id)
            shown += len(cells["col"])
            assert (alpha > 0).sum() == len(cells["col"]) * side * side  # empty cells transparent
        assert shown == len(members) == manifest["levels"][z]["filled"]
        finer_reps[z] = reps
    assert sum(len(v) for v in _members(manifest, points, 0).values()) == 376 == manifest["placed"]
    assert not (atlas.path / ".work").exists()
    # built once: a second call returns it untouched
    stamp = atlas.image_path(0, 0, 0).stat().st_mtime_ns
    assert h.atlas(input_dir=str(run)).image_path(0, 0, 0).stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_a_column_picks_its_top_member_and_an_unknown_column_is_named(galaxies, tmp_path):
    from hyrax.errors import ConfigError
    from hyrax.visualize.source import MapSource

    h, run = galaxies
    copy = tmp_path / "map"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("atlas"))
    with pytest.raises(ConfigError, match=r'atlas.choose = "rnig".*Did you mean \'ring\''):
        h.atlas(input_dir=str(copy), choose="rnig")
    atlas = h.atlas(input_dir=str(copy), choose="ring", order="max")
    source = MapSource(h.config, copy)
    values = dict(zip(source.ids(np.arange(376)), source.columns_of(np.arange(376))["ring"], strict=True))
    members = _members(atlas.manifest, _map(copy), atlas.max_level)
    for tx, ty in atlas.tiles(atlas.max_level):
        cells = atlas.cells(atlas.max_level, tx, ty)
        for col, row, object_id, value in zip(
            cells["col"], cells["row"], cells["object_id"], cells["value"], strict=True
        ):
            mine = members[tx * 16 + col, ty * 16 + row]
            assert value == values[object_id] == max(values[i] for i in mine)


@pytest.mark.slow
def test_the_top_outlier_score_of_each_cell(galaxies, tmp_path):
    """choose = "outlier_score" (h.outliers() scored the inference run): each deepest cell shows its
    member of highest score, and says the score."""
    from hyrax.visualize.source import MapSource, infer_run_of

    h, run = galaxies
    copy = _copy(run, tmp_path / "map")
    h.set_config("results.inference_dir", str(infer_run_of(run)))
    try:
        h.outliers(top=5)
    finally:
        h.set_config("results.inference_dir", False)
    atlas = h.atlas(input_dir=str(copy), choose="outlier_score")
    scores = MapSource(h.config, copy).scores(np.arange(376))
    assert scores is not None and np.isfinite(scores).all()
    score_of = dict(zip(MapSource(h.config, copy).ids(np.arange(376)), scores, strict=True))
    members = _members(atlas.manifest, _map(copy), atlas.max_level)
    for tx, ty in atlas.tiles(atlas.max_level):
        cells = atlas.cells(atlas.max_level, tx, ty)
        for col, row, object_id, value in zip(
            cells["col"], cells["row"], cells["object_id"], cells["value"], strict=True
        ):
            best = max(score_of[i] for i in members[tx * 16 + col, ty * 16 + row])
            assert value == pytest.approx(float(score_of[object_id])) and score_of[object_id] == best


def _files(folder: Path) -> dict:
    """Every file of an atlas but the manifest's record of which run it is in."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != ".lock":
            data = path.read_bytes()
            if path.name == "manifest.json":
                manifest = json.loads(data)
                manifest["made_from"].pop("reduce_run"), manifest.pop("build")
                data = manifest
            found[str(path.relative_to(folder))] = data
    return found


DEFAULTS = {"atlas.cells": 16, "atlas.cell_px": 32, "atlas.max_level": "auto", "visualize.band": False}
#: Small settings with several buckets (max_level 4: buckets are level-1 tiles), fast to draw.
SMALL = {"atlas.cells": 4, "atlas.cell_px": 8, "atlas.max_level": 4, "visualize.band": 0}


def _copy(run: Path, target: Path) -> Path:
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("atlas"))
    return target


@contextlib.contextmanager
def _small(h):
    """The SMALL settings on h's config for the block."""
    for key, value in SMALL.items():
        h.set_config(key, value)
    try:
        yield
    finally:
        for key in SMALL:
            h.set_config(key, DEFAULTS[key])


@pytest.mark.slow  # ~5 s; the cells test (default) covers the build
def test_chunked_and_stopped_builds_equal_one_uninterrupted_build(galaxies, tmp_path, monkeypatch):
    """Memory is bounded by the chunk, not the map: the build in chunks of 37 records and batches of 50
    map rows is the build in one, byte for byte; and a build stopped after some tiles, run again,
    finishes equal to an uninterrupted one (the finished buckets skipped)."""
    import hyrax.visualize.atlas_build as build

    h, run = galaxies
    with _small(h):
        expected = _files(h.atlas(input_dir=str(_copy(run, tmp_path / "whole"))).path)
        tiles = len([k for k in expected if k.endswith(".webp")])
        assert tiles > 40
        monkeypatch.setattr(build, "CHUNK", 37)
        monkeypatch.setattr(build, "READ_BATCH", 50)
        assert _files(h.atlas(input_dir=str(_copy(run, tmp_path / "chunked"))).path) == expected

        stopped = _copy(run, tmp_path / "stopped")
        written, tile = [], build.AtlasBuilder.write_tile

        def stop_after_some(self, *args):
            tile(self, *args)
            written.append(args[:3])
            if len(written) == int(tiles * 0.7):
                raise KeyboardInterrupt("stopped")

        monkeypatch.setattr(build.AtlasBuilder, "write_tile", stop_after_some)
        with pytest.raises(KeyboardInterrupt):
            h.atlas(input_dir=str(stopped))
        unfinished = json.loads((stopped / "atlas" / "manifest.json").read_text())
        assert not unfinished["complete"]
        assert (stopped / "atlas" / ".work" / "summaries").is_dir()
        first = len(written)
        h.atlas(input_dir=str(stopped))
        assert len(written) - first < tiles  # the finished buckets were not drawn again
        assert _files(stopped / "atlas") == expected
        finished = json.loads((stopped / "atlas" / "manifest.json").read_text())
        assert finished["build"] == unfinished["build"]  # the same build, finished


def test_what_the_build_holds_does_not_grow_with_the_map(galaxies):
    """The builder holds no per-object array (the map's coordinates are streamed, not loaded), and one
    bucket, the most it holds at once besides a chunk, spans a fixed number of cells at any map size."""
    from hyrax.visualize.atlas import AtlasSettings, auto_level
    from hyrax.visualize.atlas_build import CHUNK, SPAN_LEVELS, AtlasBuilder

    h, run = galaxies
    builder = AtlasBuilder(h.config, run, AtlasSettings())
    assert builder.source.x is None and builder.source.y is None and builder.source.priority is None
    for objects in (10**3, 10**6, 10**8, 10**10):
        deepest = auto_level(objects, 16)
        span = 2 ** (deepest - max(0, deepest - SPAN_LEVELS)) * 16
        assert span**2 <= 16_384 and CHUNK <= 2**20, objects


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read(), answer.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers["Content-Type"]


def test_the_live_server_serves_the_atlas_to_its_user_only(galaxies):
    from hyrax.visualize.live import LiveMap

    h, run = galaxies
    atlas = h.atlas(input_dir=str(run))
    live = LiveMap(h.config, run)
    live.start(0, page="<html></html>")
    try:
        base, token = live.address, live.token
        status, body, kind = _get(f"{base}atlas/manifest.json?token={token}")
        assert status == 200 and json.loads(body) == atlas.manifest
        tx, ty = atlas.tiles(1)[0]
        status, body, kind = _get(
            f"{base}atlas/1/{tx}/{ty}.webp?token={token}&build={atlas.manifest['build']}"
        )
        assert (status, kind) == (200, "image/webp") and body == atlas.image_path(1, tx, ty).read_bytes()
        status, body, _ = _get(f"{base}atlas/1/{tx}/{ty}.json", {"X-Hyrax-Token": token})
        assert status == 200 and json.loads(body) == atlas.cells(1, tx, ty)
        assert json.loads(_get(f"{base}atlas/1/tiles.json?token={token}")[1])["tiles"] == [
            list(t) for t in atlas.tiles(1)
        ]
        # refused: no token, a foreign Host (DNS rebinding)
        assert _get(f"{base}atlas/1/{tx}/{ty}.webp")[0] == 403
        port = live.server.server_address[1]
        rebound = {"Host": f"evil.example:{port}"}
        assert _get(f"{base}atlas/1/{tx}/{ty}.webp?token={token}", rebound)[0] == 403
        # no file outside the format, no empty tile
        assert _get(f"{base}atlas/../source.toml?token={token}")[0] == 404
        assert _get(f"{base}atlas/.work/buckets.json?token={token}")[0] == 404
        status, body, _ = _get(f"{base}atlas/2/99/99.webp?token={token}")
        assert status == 404 and "no atlas file" in json.loads(body)["error"]
    finally:
        live.stop()


def test_the_live_server_says_how_to_build_a_missing_atlas(galaxies, tmp_path):
    from hyrax.visualize.live import LiveMap

    h, run = galaxies
    copy = tmp_path / "map"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("atlas"))
    live = LiveMap(h.config, copy)
    live.start(0, page="<html></html>")
    try:
        status, body, _ = _get(f"{live.address}atlas/manifest.json?token={live.token}")
        assert status == 404 and "has not been built: run `hyrax atlas" in json.loads(body)["error"]
    finally:
        live.stop()


@pytest.mark.slow
def test_a_build_killed_at_a_fault_point_and_rerun_equals_an_uninterrupted_one(galaxies, tmp_path):
    """SIGKILL after the 30th tile (HYRAX_FAULT=atlas.tile_written:30): nothing flushed, no finally; the
    rerun finishes the atlas equal, file for file, to one built without a kill."""
    h, run = galaxies
    killed = _copy(run, tmp_path / "killed")
    config = tmp_path / "config.toml"
    config.write_text(
        "[data_request.infer.galaxies]\ndataset_class = 'DecalsRingsDataset'\n"
        "[atlas]\ncells = 4\ncell_px = 8\nmax_level = 4\n[visualize]\nband = 0\n"
    )
    with _small(h):
        expected = _files(h.atlas(input_dir=str(_copy(run, tmp_path / "whole"))).path)
    command = [sys.executable, "-m", "hyrax", "atlas", "-c", str(config), "--input-dir", str(killed)]
    environment = {**os.environ, "HYRAX_FAULT": "atlas.tile_written:30"}
    died = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert died.returncode == -9, died.stderr[-2000:]
    assert not json.loads((killed / "atlas" / "manifest.json").read_text())["complete"]
    environment.pop("HYRAX_FAULT")
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "atlas of 376 objects" in done.stdout
    found = _files(killed / "atlas")
    assert found.pop("manifest.json") == expected.pop("manifest.json")
    assert found == expected


@pytest.mark.slow
def test_light_curves_are_drawn_as_curves_in_the_cells(real_data, tmp_path):
    """An atlas of the Stripe 82 RR Lyrae: each cell a light curve drawn per band (not a grey array)."""
    pytest.importorskip("nested_pandas")
    from PIL import Image

    from hyrax.visualize.atlas import AtlasSettings
    from hyrax.visualize.atlas_build import build_atlas
    from tests.visualize.conftest import write_catalog_map
    from tests.visualize.test_curves import LIGHTCURVE, colour_summary, rrlyrae_parquet

    path = rrlyrae_parquet(real_data, tmp_path / "rrlyrae.parquet")
    entry = {"curves": {"dataset_class": "NestedPandasDataset", "data_location": str(path)}}
    settings = {"data_set.lightcurve": {**LIGHTCURVE, "field": "lightcurve"}}
    config, run = write_catalog_map(tmp_path, np.random.default_rng(0).normal(size=(200, 2)), entry, settings)
    atlas = build_atlas(config, run, AtlasSettings(cells=4, cell_px=48, max_level=1, image_format="png"))
    cells = atlas.cells(0, 0, 0)
    picture = np.asarray(Image.open(atlas.image_path(0, 0, 0)))[..., :3]
    for col, row in zip(cells["col"], cells["row"], strict=True):
        cell = picture[row * 48 : (row + 1) * 48, col * 48 : (col + 1) * 48]
        hues, background = colour_summary(cell)
        assert hues >= 3 and background > 0.3, (col, row, hues, background)
