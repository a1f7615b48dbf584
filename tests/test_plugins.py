"""The one registry mechanism: names, lazy entries, import paths, and misses with suggestions."""

from __future__ import annotations

import pytest

from hyrax.errors import PluginError
from hyrax.plugins import Registry, import_object


def test_register_and_get_by_name_and_lazy_path():
    registry = Registry("widget")
    registry.register("Ordered", lazy="collections:OrderedDict", summary="ordered")
    registry.register("Plain", dict)
    assert registry.names() == ["Ordered", "Plain"]
    assert registry.get("Plain") is dict
    import collections

    assert registry.get("Ordered") is collections.OrderedDict
    assert registry.summary("Ordered") == "ordered"


def test_get_by_import_path():
    registry = Registry("widget")
    import json

    assert registry.get("json.JSONDecoder") is json.JSONDecoder
    assert registry.get("json:JSONDecoder") is json.JSONDecoder


def test_miss_lists_names_and_suggests():
    registry = Registry("model", "Decorate your class with @hyrax_model.")
    registry.register("HyraxAutoencoder", dict)
    registry.register("HyraxCNN", list)
    with pytest.raises(PluginError) as error:
        registry.get("HyraxAutoEncodr")
    message = str(error.value)
    assert "Unknown model 'HyraxAutoEncodr'" in message
    assert "Did you mean 'HyraxAutoencoder'?" in message
    assert "HyraxAutoencoder, HyraxCNN" in message
    assert "@hyrax_model" in message


def test_import_path_errors_say_what_failed():
    with pytest.raises(PluginError, match=r"Cannot import module 'no_such_pkg\.models'.*installed"):
        import_object("no_such_pkg.models.Thing", "model")
    with pytest.raises(
        PluginError, match=r"Module 'json' has no model named 'JSONDecodr'.*Did you mean 'JSONDecoder'"
    ):
        import_object("json.JSONDecodr", "model")
    with pytest.raises(PluginError, match="not an import path"):
        import_object("Thing", "model")


def test_reregistering_replaces_like_a_rerun_notebook_cell():
    registry = Registry("widget")
    registry.register("Thing", dict)
    registry.register("Thing", list)
    assert registry.get("Thing") is list


def test_missing_optional_backend_names_the_extra():
    from hyrax.plugins import optional_import

    with pytest.raises(
        PluginError, match=r"needs the optional package 'no_such_backend'.*pip install 'hyrax\[fancy\]'"
    ):
        optional_import("no_such_backend", "fancy", "Fancy plots")
    assert optional_import("json", "x", "y").dumps({}) == "{}"
