"""Every migration step: an old config in, the new keys out, and a warning naming old -> new."""

from __future__ import annotations

import warnings

import pytest

from hyrax.config import ConfigManager
from hyrax.config.migrations import current_version, migrate
from hyrax.errors import ConfigError, ConfigMigrationWarning


def load(write_config, text):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = ConfigManager(write_config(text))
    messages = [str(w.message) for w in caught if issubclass(w.category, ConfigMigrationWarning)]
    return manager.config, messages


def test_current_config_has_no_migration_warnings(write_config):
    _, messages = load(write_config, f"config_version = {current_version()}\n[train]\nepochs = 2\n")
    assert messages == []


def test_version_newer_than_this_release_says_upgrade(write_config):
    with pytest.raises(ConfigError, match=r"config_version = 99.*Upgrade Hyrax"):
        ConfigManager(write_config("config_version = 99\n"))


def test_bad_version_value(write_config):
    with pytest.raises(ConfigError, match=r"config_version .* must be a whole number"):
        ConfigManager(write_config('config_version = "two"\n'))


def test_002_model_inputs_becomes_data_request(write_config):
    config, messages = load(
        write_config,
        """
        [model_inputs.train.data]
        dataset_class = "HyraxRandomDataset"
        primary_id_field = "object_id"
        """,
    )
    assert config["data_request"]["train"]["data"]["dataset_class"] == "HyraxRandomDataset"
    assert "model_inputs" not in config
    assert any("[model_inputs] -> [data_request]" in m for m in messages)


def test_003_data_loader_shuffle_becomes_train_shuffle(write_config):
    config, messages = load(write_config, "[data_loader]\nshuffle = false\n")
    assert config["train"]["shuffle"] is False
    assert "shuffle" not in config["data_loader"]
    assert any("data_loader.shuffle -> train.shuffle" in m for m in messages)


def test_004_split_fraction_becomes_split_table(write_config):
    config, messages = load(
        write_config,
        """
        [data_request.train.data]
        dataset_class = "HyraxRandomDataset"
        primary_id_field = "object_id"
        split_fraction = 0.7
        [data_request.validate.data]
        dataset_class = "HyraxRandomDataset"
        primary_id_field = "object_id"
        split_fraction = 0.3
        """,
    )
    assert config["split"]["train"] == 0.7 and config["split"]["validate"] == 0.3
    assert "split_fraction" not in config["data_request"]["train"]["data"]
    assert any("data_request.train.data.split_fraction -> split.train" in m for m in messages)


def test_004_old_data_set_sizes_become_split_table(write_config):
    config, messages = load(write_config, "[data_set]\ntrain_size = 0.8\ntest_size = 0.2\n")
    assert config["split"]["train"] == 0.8 and config["split"]["test"] == 0.2
    assert "train_size" not in config["data_set"]
    assert any("data_set.train_size -> split.train" in m for m in messages)


def test_005_umap_becomes_reduce_dimensions(write_config):
    config, messages = load(
        write_config,
        """
        [umap]
        fit_sample_size = 500
        parallel = false
        save_fit_umap = true
        [umap.UMAP]
        n_neighbors = 30
        n_components = 3
        """,
    )
    reduce = config["reduce_dimensions"]
    assert reduce["name"] == "umap"
    assert reduce["umap"]["fit_sample_size"] == 500
    assert reduce["umap"]["kwargs"]["n_neighbors"] == 30
    assert reduce["n_components"] == 3
    assert reduce["parallel"] is False
    assert "umap" not in config
    joined = "\n".join(messages)
    assert "umap.fit_sample_size -> reduce_dimensions.umap.fit_sample_size" in joined
    assert "umap.UMAP.n_neighbors -> reduce_dimensions.umap.kwargs.n_neighbors" in joined
    assert "umap.save_fit_umap removed" in joined
    assert "[umap] -> [reduce_dimensions]" in joined


def test_007_reduce_becomes_reduce_dimensions(write_config):
    config, messages = load(write_config, '[reduce]\nname = "pca"\n')
    assert config["reduce_dimensions"]["name"] == "pca"
    assert any("reduce.name -> reduce_dimensions.name" in m for m in messages)


def test_006_preload_keys_are_removed(write_config):
    config, messages = load(write_config, "[data_set]\npreload_cache = true\npreload_threads = 4\n")
    assert "preload_cache" not in config["data_set"] and "preload_threads" not in config["data_set"]
    assert any("data_set.preload_cache removed" in m for m in messages)
    assert any("data_set.preload_threads removed" in m for m in messages)


def test_a_whole_old_config_loads_in_one_go(write_config):
    config, messages = load(
        write_config,
        """
        [data_loader]
        shuffle = true
        batch_size = 32
        [data_set]
        preload_cache = true
        [model_inputs.train.data]
        dataset_class = "HyraxRandomDataset"
        split_fraction = 0.5
        [umap.UMAP]
        n_neighbors = 5
        """,
    )
    assert config["config_version"] == current_version()
    assert config["train"]["shuffle"] is True and config["split"]["train"] == 0.5
    assert len(messages) >= 5


def test_migrate_sets_version_and_is_idempotent():
    config = {"data_loader": {"shuffle": True}}
    with pytest.warns(ConfigMigrationWarning):
        migrate(config, "test")
    assert config["config_version"] == current_version()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        migrate(config, "test")


def test_version_numbers_are_the_published_ones(write_config):
    # The published Hyrax stamps its configs 7; a version-1 file still has [model_inputs].
    assert current_version() == 7
    config, _ = load(write_config, "config_version = 7\n[train]\nepochs = 3\n")
    assert config["train"]["epochs"] == 3
    config, messages = load(
        write_config, 'config_version = 1\n[model_inputs.train.data]\ndataset_class = "HyraxRandomDataset"\n'
    )
    assert config["data_request"]["train"]["data"]["dataset_class"] == "HyraxRandomDataset"
    assert any("[model_inputs] -> [data_request]" in m for m in messages)
    # Version 6 still had [reduce].
    config, _ = load(write_config, "config_version = 6\n[reduce]\nbatch_size = 77\n")
    assert config["reduce_dimensions"]["batch_size"] == 77


def test_configs_stamped_by_earlier_releases_of_this_hyrax_load_unchanged(write_config):
    # Earlier releases of this Hyrax numbered one lower (5 meant every step applied): the steps
    # from there on find nothing to change.
    _, messages = load(write_config, "config_version = 5\n[train]\nepochs = 2\n")
    assert messages == []
