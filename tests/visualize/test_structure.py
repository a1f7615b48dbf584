"""The map's code stays in a shape it can grow in: one concern per module (data, page, server, view), no
import cycle among them, no function over 60 lines, and the page's JavaScript in real .js files that a
browser runs (here, Chromium through Playwright, as in test_browser)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(importlib.import_module("hyrax.visualize").__file__).parent


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def test_no_function_is_over_60_lines():
    long = [
        f"{name}.py:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long


def test_the_map_modules_import_each_other_without_a_cycle():
    """Every import among hyrax.visualize modules, at module level or inside a function."""
    edges = {name: set() for name in _modules()}
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hyrax.visualize."):
                edges[name].add(node.module.split(".")[2])
    seen, stack = set(), []

    def visit(name):
        assert name not in stack, f"import cycle: {' -> '.join([*stack, name])}"
        if name in seen:
            return
        stack.append(name)
        for other in edges.get(name, ()):
            visit(other)
        stack.pop()
        seen.add(name)

    for name in edges:
        visit(name)


def test_every_script_file_is_used_and_every_used_one_ships():
    from hyrax.visualize import page

    files = {path.stem for path in (PACKAGE / "js").glob("*.js")}
    used = set()
    for node in ast.walk(_modules()["page"]):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "script":
            used.update(ast.literal_eval(node.args[0]))
    assert used == files
    for name in files:
        assert "function " in page.javascript(name)


@pytest.fixture(scope="module")
def js_page(request):
    from tests.visualize.test_browser import ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.fail(
            "Chromium is not installed (apt-get install chromium); see tests/visualize/test_browser.py"
        )
    from playwright.sync_api import sync_playwright

    from hyrax.visualize.page import javascript

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        for name in (
            "escape",
            "csv",
            "labels",
            "project",
            "selection",
            "neighbours",
            "regions",
            "viewport",
            "ranking",
            "atlas",
            "exported",
        ):
            page.add_script_tag(content=javascript(name))  # a syntax error fails here
        yield page
        browser.close()


def test_the_page_escapes_what_it_shows(js_page):
    assert js_page.evaluate("esc(`<img src=x onerror=\"alert('1')\">&`)") == (
        "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
    )
    tile = js_page.evaluate("neighbourTile('thumb?id=a\"b', '<b>')")
    assert 'src="thumb?id=a&quot;b"' in tile and "&lt;b&gt;" in tile
    # an id reaches the label buttons as an escaped data attribute, never as code
    buttons = js_page.evaluate('labelButtons(`x" onmouseover="alert(1)`)')
    assert (
        'data-id="x&quot; onmouseover=&quot;alert(1)"' in buttons
        and 'onclick="hyraxLabel([this.dataset.id], 1)"' in buttons
    )


def test_the_labels_csv_is_what_h_label_reads(js_page, tmp_path):
    from hyrax.discovery.labels import read_csv_labels

    text = js_page.evaluate("labelsCSV({'J1,2': {label: 1, tag: 'ring'}, 'J3': {label: 0, tag: ''}})")
    path = tmp_path / "labels.csv"
    path.write_text(text)
    frame = read_csv_labels(path)
    assert frame["object_id"].tolist() == ["J1,2", "J3"] and frame["label"].tolist() == [1, 0]
    assert frame["tag"].tolist() == ["ring", ""]


def test_the_csv_export_follows_rfc_4180(js_page):
    text = js_page.evaluate(
        "csvText({object_id: ['a,1', 'b\"2', 'c'], tag: ['x\\ny', 'plain', 3]}, ['object_id', 'tag'])"
    )
    assert text == 'object_id,tag\n"a,1","x\ny"\n"b""2",plain\nc,3'


def test_the_3d_projection_in_the_page_is_the_one_in_python(js_page):
    from hyrax.visualize.mapdata import project

    xyz = np.random.default_rng(3).normal(size=(50, 3))
    px, py = js_page.evaluate(
        "([x, y, z]) => { const d = {map_x: x, map_y: y, map_z: z}; project(d, 40, -25); "
        "return [Array.from(d.map_px), Array.from(d.map_py)]; }",
        [xyz[:, 0].tolist(), xyz[:, 1].tolist(), xyz[:, 2].tolist()],
    )
    ex, ey = project(xyz, 40, -25)
    np.testing.assert_allclose(px, ex, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(py, ey, rtol=1e-5, atol=1e-5)


def test_the_page_finds_an_exported_object_in_the_shard_python_wrote_it_to(js_page):
    from hyrax.visualize.export import shard_of

    ids = ["J0000", "J095421.42+040531.1", "galaxy/ä漢字", 'x<img src=nope>,"quoted"', "", "123"]
    assert js_page.evaluate("ids => ids.map(id => fnv1a(id) % 7)", ids) == [shard_of(i, 7) for i in ids]


def test_the_page_picks_the_atlas_level_whose_thumbnails_fit_and_the_tiles_in_view(js_page):
    """A 16-unit square, 16 cells a tile, in a 560-pixel frame: level 0's cells are 35 px for the whole
    square (under 48: the density view), 70 px for half of it; level 2's are 140 px a unit wide (past
    128: single objects)."""
    manifest = {"extent": [0, 0, 16, 16], "cells": 16, "max_level": 2, "cell_px": 32}
    levels = js_page.evaluate(
        """([manifest, widths]) => widths.map(w => atlasLevel(manifest,
            {inner_width: 560, x_range: {start: 0, end: w}}))""",
        [manifest, [16, 8, 3, 1.5, 1]],
    )
    assert levels == [-1, 0, 1, 2, 3]
    # tx from the left, ty from the TOP of the square (hyrax-atlas/1)
    assert js_page.evaluate("m => tilesUnder(m, 1, [0.5, 7.5, 8.5, 15])", manifest) == [[0, 0]]
    assert js_page.evaluate("m => tilesUnder(m, 1, [7, 9, 1, 2])", manifest) == [[0, 1], [1, 1]]
