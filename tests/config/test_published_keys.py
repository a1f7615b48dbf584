"""Configs written for the published Hyrax (0.13) load here: its key names are read as ours."""

from __future__ import annotations

import warnings

import pytest

from hyrax import Hyrax
from hyrax.config import ConfigManager
from hyrax.errors import ConfigMigrationWarning

# An excerpt of the published Hyrax's own hyrax_default_config.toml (and of the runtime_config.toml its
# runs write): every key below is a published name.
PUBLISHED_DEFAULTS = """
config_version = 7
[model]
name = ""
[model.SimCLR]
horizontal_flip_probability = 0.5
color_jitter_params = [0.8, 0.8, 0.8, 0.2]
[criterion]
name = "torch.nn.CrossEntropyLoss"
band_loss_reduction = "mean"
[train]
split = "train"
[test]
experiment_name = "notebook"
run_name = false
[data_set]
use_cache = true
astropy_table = false
semi_width_deg = 0.00472
[balance]
field = false
groups = []
[vector_db.qdrant]
vector_size = 64
[reduce_dimensions]
algorithm = "umap"
save_fit_model = true
[reduce_dimensions.umap]
model_path = false
[reduce_dimensions.umap.kwargs]
n_components = 2
[reduce_dimensions.tsne.kwargs]
n_components = 2
perplexity = 30.0
[visualize]
fields = []
cmap = "viridis"
[visualize_v2]
plot_width = 1000
[infer_stream]
model_weights_file = false
"""


def load(write_config, text):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = ConfigManager(write_config(text))
    return manager.config, [str(w.message) for w in caught if issubclass(w.category, ConfigMigrationWarning)]


def test_published_defaults_load_quietly(write_config):
    config, messages = load(write_config, PUBLISHED_DEFAULTS)
    assert messages == []
    assert config["reduce_dimensions"]["name"] == "umap"
    assert config["reduce_dimensions"]["tsne"]["kwargs"]["perplexity"] == 30.0
    assert config["model"]["name"] is False  # "" meant "not set"
    assert "visualize_v2" not in config and "algorithm" not in config["reduce_dimensions"]


def test_renamed_keys_keep_their_meaning_and_say_what_to_write(write_config):
    config, messages = load(
        write_config,
        """
        [reduce_dimensions]
        algorithm = "pca"
        [reduce_dimensions.umap]
        model_path = "old/umap.pkl"
        [reduce_dimensions.umap.kwargs]
        n_components = 3
        [reduce_dimensions.pca.kwargs]
        n_components = 2
        [balance]
        field = "label"
        """,
    )
    reduce = config["reduce_dimensions"]
    assert reduce["name"] == "pca" and config["label"]["field"] == "label"
    # Per-algorithm keys are keys here too: they apply to their algorithm only, as published.
    assert reduce["umap"]["model_path"] == "old/umap.pkl" and reduce["umap"]["kwargs"]["n_components"] == 3
    from hyrax.reduce.run import components, model_path

    assert (components(config), model_path(config)) == (2, None)  # pca: its own settings
    config["reduce_dimensions"]["name"] = "umap"
    assert (components(config), model_path(config)) == (3, "old/umap.pkl")
    joined = "\n".join(messages)
    assert 'reduce_dimensions.algorithm -> reduce_dimensions.name: write name = "pca"' in joined
    assert "balance.field -> label.field" in joined


def test_a_changed_key_without_effect_here_is_a_warning_that_says_what_to_do(write_config):
    _, messages = load(write_config, '[vector_db.qdrant]\nvector_size = 128\n[train]\nsplit = "mine"\n')
    joined = "\n".join(messages)
    assert (
        "vector_db.qdrant.vector_size = 128 has no effect" in joined and "read from the inference" in joined
    )
    assert 'train.split = "mine" has no effect' in joined


def test_published_keys_through_set_config_and_hand_edits():
    h = Hyrax(setup_logging=False)
    with pytest.warns(ConfigMigrationWarning, match="reduce_dimensions.algorithm -> reduce_dimensions.name"):
        h.set_config("reduce_dimensions.algorithm", "pca")
    assert h.config["reduce_dimensions"]["name"] == "pca"
    h.set_config("reduce_dimensions", {"umap": {"model_path": "fit.pkl"}})  # a key here too
    assert h.config["reduce_dimensions"]["umap"]["model_path"] == "fit.pkl"
    # Edited by hand (as published notebooks do), read when the next verb runs.
    h.config["reduce_dimensions"]["algorithm"] = "umap"
    assert h._manager.resolved()["reduce_dimensions"]["name"] == "umap"
    h.config["reduce_dimensions"]["algorithm"] = "tsne"
    with pytest.warns(ConfigMigrationWarning, match='write name = "tsne"'):
        assert h._manager.resolved()["reduce_dimensions"]["name"] == "tsne"


def test_float_tsne_perplexity_is_accepted(write_config):
    config, _ = load(write_config, "[reduce_dimensions.tsne.kwargs]\nperplexity = 12.5\n")
    assert config["reduce_dimensions"]["tsne"]["kwargs"]["perplexity"] == 12.5


def test_the_migration_page_lists_every_published_key():
    """docs/migration.md names every key read under another name or dropped (so it cannot drift)."""
    from pathlib import Path

    from hyrax.config.published import NO_EFFECT, RENAMED

    page = (Path(__file__).parents[2] / "docs" / "migration.md").read_text()
    for key in [*RENAMED, *NO_EFFECT]:
        table, leaf = key.rsplit(".", 1)
        assert f"`{key}`" in page or (leaf in page and table.split(".")[0] in page), key
