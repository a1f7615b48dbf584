"""A map of a catalog (issue 26): the catalog's columns keep their names and values beside the map's own
(a redshift ``z`` was overwritten by the map's third coordinate, and a 2-D map of it drew an empty 3-D
panel), and any column colours the map: text by category with a legend (it crashed: "could not convert
string to float"), skewed numbers on a log or rank scale, from the notebook, the command line and the
live app."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from tests.visualize.conftest import radio_catalog, write_catalog_map


@pytest.fixture
def radio_map(tmp_path):
    """A 2-D map of a radio catalog with ``z``, ``fr_class`` and ``flux`` columns (300 objects)."""
    catalog = radio_catalog(tmp_path / "catalog.csv")
    coordinates = np.random.default_rng(1).normal(size=(300, 3))
    entry = {"catalog": {"dataset_class": "HyraxCSVDataset", "data_location": str(catalog)}}
    config, run = write_catalog_map(tmp_path / "two", coordinates[:, :2], entry)
    return config, run, pd.read_csv(catalog).set_index("object_id"), coordinates, entry


def _model(layout, name: str):
    found = list(layout.select({"name": name}))
    return found[0] if found else None


def _decoded(column: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(column["data"]), dtype=np.dtype(column["dtype"]).newbyteorder("<"))


def test_a_catalog_z_column_keeps_its_values_and_a_2d_map_has_no_3d_panel(radio_map):
    from hyrax.visualize.live import LiveMap
    from hyrax.visualize.mapdata import gather
    from hyrax.visualize.page import build_layout

    config, run, catalog, _, _ = radio_map
    data = gather(config, run, thumbnails=False, neighbours=0)
    layout = build_layout(data)
    points = _model(layout, "points").data
    expected = catalog.loc[points["object_id"], "z"].to_numpy()
    np.testing.assert_allclose(points["z"], expected)  # the side table shows the catalog's redshift
    assert points["z"][points["object_id"].index("J0000")] == 0.154
    assert _model(layout, "map_3d") is None  # a 2-D map: no 3-D panel
    live = LiveMap(config, run)
    x0, y0, x1, y1 = live.extent
    answer = live.view(x0, x1, y0, y1)
    np.testing.assert_allclose(
        _decoded(answer["arrays"]["z"]), catalog.loc[answer["points"]["object_id"], "z"].to_numpy()
    )
    assert _model(build_layout(live.initial(), live=True), "map_3d") is None


def test_a_3d_map_keeps_the_catalog_z_beside_its_third_coordinate(radio_map, tmp_path):
    from hyrax.visualize.live import LiveMap
    from hyrax.visualize.mapdata import gather
    from hyrax.visualize.page import build_layout

    config, _, catalog, coordinates, entry = radio_map
    config, run = write_catalog_map(tmp_path / "three", coordinates, entry)
    data = gather(config, run, thumbnails=False, neighbours=0)
    layout = build_layout(data)
    points = _model(layout, "points").data
    rows = [int(i[1:]) for i in points["object_id"]]
    np.testing.assert_allclose(points["z"], catalog["z"].to_numpy()[rows])
    np.testing.assert_allclose(points["map_z"], coordinates[rows, 2], rtol=1e-6)
    assert _model(layout, "map_3d") is not None  # a 3-D map keeps its turnable view
    frame = data.to_dataframe()
    assert {"object_id", "map_x", "map_y", "map_z", "z", "fr_class"} <= set(frame.columns)
    assert frame.set_index("object_id").loc["J0000", "z"] == 0.154
    live = LiveMap(config, run)
    x0, y0, x1, y1 = live.extent
    answer = live.view(x0, x1, y0, y1)
    rows = [int(i[1:]) for i in answer["points"]["object_id"]]
    np.testing.assert_allclose(_decoded(answer["arrays"]["z"]), catalog["z"].to_numpy()[rows])
    np.testing.assert_allclose(_decoded(answer["arrays"]["map_z"]), coordinates[rows, 2], rtol=1e-6)


def test_a_text_column_colours_the_map_by_category_with_a_legend(radio_map, tmp_path):
    """`h.visualize(color_column="fr_class")` then `view.save()` raised "could not convert string to
    float"; now each class gets a colour and the legend names them."""
    from hyrax.visualize.page import build_layout
    from hyrax.visualize.view import MapView

    config, run, catalog, _, _ = radio_map
    view = MapView(config, run, "fr_class")
    page = view.save(tmp_path / "map.html").read_text()
    assert "fr_class (categories)" in page
    legend = _model(build_layout(view.data, "fr_class"), "colour_legend")
    assert [item.label["value"] for item in legend.items] == ["FRI", "FRII", "bent", "compact"]
    page = view.live.page()  # the live app: the same legend, and a colour per point in each answer
    assert "fr_class (categories)" in page
    x0, y0, x1, y1 = view.live.extent
    answer = view.live.view(x0, x1, y0, y1)
    assert answer["points"]["map_colour"] == answer["points"]["fr_class"]


def test_colour_scales_follow_the_documented_rule(real_data):
    """Categories for text (ten colours, the rest "other", the same order whatever the row order),
    log for skewed positive numbers, rank for skewed ones with negatives, linear otherwise."""
    from hyrax.visualize.colours import MAX_CATEGORIES, OTHER, choose

    labels = pd.read_csv(real_data / "crts_transients" / "objects.csv")["label"].to_numpy()  # 32 classes
    scale = choose("label", labels)
    top = pd.Series(labels).value_counts().index[:MAX_CATEGORIES]
    assert scale.kind == "category" and scale.categories == (*sorted(top), OTHER)
    assert choose("label", labels[np.random.default_rng(0).permutation(len(labels))]) == scale
    assert scale.encode(np.array(["SN", "Comet"])) == ["SN", OTHER]
    assert len(set(scale.colours)) == len(scale.colours) == MAX_CATEGORIES + 1
    assert choose("ring", np.array([0, 1, 1])).categories == ("0", "1")  # few whole numbers
    assert choose("flag", np.array([True, False])).categories == ("False", "True")
    rng = np.random.default_rng(0)
    assert choose("score", rng.lognormal(0, 1.5, 5000)).kind == "log"
    skewed = choose("offset", rng.lognormal(0, 1.5, 5000) - 2)
    assert skewed.kind == "rank" and "rank" in skewed.title
    quantiles = skewed.encode(np.array([skewed.quantiles[0], skewed.quantiles[-1], np.nan]))
    assert quantiles[0] == 0 and quantiles[1] == 1 and np.isnan(quantiles[2])
    assert choose("mag", rng.normal(20, 1, 5000)).kind == "linear"
    assert choose("mag", rng.normal(20, 1, 5000), "rank").kind == "rank"  # visualize.color_scale


def test_color_scale_setting_and_its_errors(radio_map):
    from hyrax.errors import ConfigError
    from hyrax.visualize.page import build_layout
    from hyrax.visualize.view import MapView

    config, run, _, _, _ = radio_map
    config["visualize"]["color_scale"] = "rank"
    view = MapView(config, run, "flux")
    bar = _model(build_layout(view.data, "flux"), "colour_bar")
    assert bar.title == "flux (rank: quantile of all objects; labels: values)"
    config["visualize"]["color_scale"] = "log"
    with pytest.raises(ConfigError, match=r'visualize.color_scale = "log" needs numbers.*"category"'):
        MapView(config, run, "fr_class")  # said when the view is made, not when the page is drawn
    config["visualize"]["color_scale"] = "auto"
    assert _model(build_layout(MapView(config, run, "flux").data, "flux"), "colour_bar").title == (
        "flux (log scale)"  # lognormal fluxes: skewed, all > 0
    )


def test_color_column_on_the_command_line(radio_map, tmp_path, capsys):
    from hyrax.cli import main

    _, run, _, _, _ = radio_map
    config = tmp_path / "config.toml"
    config.write_text(f'[general]\nresults_dir = "{tmp_path / "results"}"\n')
    page = tmp_path / "map.html"
    argv = ["visualize", "-c", str(config), "-i", str(run), "--html", str(page)]
    assert main([*argv, "--color-column", "fr_class"]) == 0
    assert "fr_class (categories)" in page.read_text()
    assert "map of 300 objects written to" in capsys.readouterr().out
    assert main([*argv, "--color-column", "fr_clas"]) == 1
    assert "Did you mean 'fr_class'?" in capsys.readouterr().err
