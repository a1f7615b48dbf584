"""Splits: fractions, disjointness, infer order, seeds, stratification, saved splits; samplers."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from hyrax import Hyrax
from hyrax.datasets.provider import providers_for
from hyrax.datasets.sampling import BalancedSampler, EpochSampler, training_sampler
from hyrax.datasets.splits import compute_splits
from hyrax.errors import ConfigError, DataError

GALAXIES = {"dataset_class": "DecalsRingsDataset"}


def make(manager, groups=("train", "validate", "test"), **split):
    for group in groups:
        manager.set_config(f"data_request.{group}.data", GALAXIES)
    for group, value in split.items():
        manager.set_config(f"split.{group}", value)
    manager.set_config("split.rng_seed", 3)
    config = manager.config
    return config, providers_for(config)


def test_shared_groups_get_disjoint_fractions_and_rest(hyrax_config):
    config, providers = make(hyrax_config, train=0.6, validate=0.2)
    splits = compute_splits(config, providers)
    train, validate, test = (splits.indices[g] for g in ("train", "validate", "test"))
    assert (len(train), len(validate)) == (225, 75) and len(test) == 376 - 300  # test takes the rest
    assert (
        not (set(train) & set(validate)) and not (set(train) & set(test)) and not (set(validate) & set(test))
    )
    assert np.all(np.diff(train) > 0)  # each group's rows in dataset order
    again = compute_splits(config, providers_for(config))
    assert all(np.array_equal(splits.indices[g], again.indices[g]) for g in splits.indices)


def test_seed_changes_the_split(hyrax_config):
    config, providers = make(hyrax_config, ("train", "validate"), train=0.5)
    first = compute_splits(config, providers).indices["train"]
    config["split"]["rng_seed"] = 4
    assert not np.array_equal(first, compute_splits(config, providers).indices["train"])


def test_counts_and_errors(hyrax_config):
    config, providers = make(hyrax_config, train=100, validate=0.5)
    splits = compute_splits(config, providers)
    assert len(splits.indices["train"]) == 100 and len(splits.indices["validate"]) == 188
    config["split"]["validate"] = 0.9
    with pytest.raises(ConfigError, match=r"asks for 438 objects.*add up to at most 1"):
        compute_splits(config, providers)
    del config["split"]["validate"]
    del config["split"]["train"]
    with pytest.raises(
        ConfigError, match=r"train, validate, test share one dataset.*have no \[split\] value"
    ):
        compute_splits(config, providers)
    config["split"]["train"] = 1.5
    with pytest.raises(ConfigError, match=r"split.train = 1.5: use a fraction in \(0, 1\]"):
        compute_splits(config, providers)


def test_single_group_uses_everything_and_infer_takes_first_n(hyrax_config):
    config, providers = make(hyrax_config, ("train", "infer"), infer=10)
    splits = compute_splits(config, providers)
    assert len(splits.indices["train"]) == 376  # train is the only group partitioning the data
    assert splits.indices["infer"].tolist() == list(range(10))


def test_stratified_split_keeps_class_shares(hyrax_config):
    hyrax_config.set_config("label.field", "ring")
    hyrax_config.set_config("split.stratify", True)
    config, providers = make(hyrax_config, ("train", "validate"), train=0.75)
    splits = compute_splits(config, providers)
    rings = providers["train"].datasets["data"].column("ring")
    assert rings[splits.indices["train"]].mean() == pytest.approx(0.5)
    assert rings[splits.indices["validate"]].mean() == pytest.approx(0.5)


def test_stratify_needs_a_label_field(hyrax_config):
    hyrax_config.set_config("split.stratify", True)
    config, providers = make(hyrax_config, ("train", "validate"), train=0.5)
    with pytest.raises(ConfigError, match="split.stratify = true needs label.field"):
        compute_splits(config, providers)


def test_create_splits_verb_saves_and_a_path_reloads(hyrax_config, tmp_path):
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    for group in ("train", "validate"):
        h.set_config(f"data_request.{group}.data", GALAXIES)
    h.set_config("split.train", 0.8)
    splits = h.create_splits()
    run = splits.run_dir
    assert (run / "train_split.npz").is_file() and (run / "validate_split.npz").is_file()
    with open(run / "split_config.toml", "rb") as handle:
        recorded = tomllib.load(handle)
    assert recorded["groups"]["train"]["count"] == 300 and recorded["seed"] == splits.seed
    h.set_config("split.train", str(run))
    h.set_config("split.validate", str(run / "validate_split.npz"))
    h.set_config("split.rng_seed", 999)  # ignored: the saved split decides
    reloaded = h.create_splits()
    assert np.array_equal(reloaded.indices["train"], splits.indices["train"])
    assert np.array_equal(reloaded.indices["validate"], splits.indices["validate"])


def test_saved_split_for_other_data_is_an_error(hyrax_config, tmp_path):
    np.savez(tmp_path / "train_split.npz", indices=np.array([0, 5000]))
    config, providers = make(hyrax_config, ("train",), train=str(tmp_path))
    with pytest.raises(DataError, match="saved for other data"):
        compute_splits(config, providers)


def test_epoch_sampler_is_a_fresh_permutation_each_epoch():
    sampler = EpochSampler(np.arange(100), seed=7)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert all(sorted(order) == list(range(100)) for order in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # reproducible
    assert list(EpochSampler(np.arange(5), seed=7, shuffle=False)) == [0, 1, 2, 3, 4]


def test_balanced_sampler_hits_target_shares(hyrax_config):
    labels = np.array([0] * 900 + [1] * 100)
    sampler = BalancedSampler(np.arange(1000), labels, {}, seed=0)
    drawn = labels[np.fromiter(sampler, dtype=int)]
    assert abs(drawn.mean() - 0.5) < 0.05
    skewed = BalancedSampler(np.arange(1000), labels, {"0": 0.2, "1": 0.8}, seed=0)
    assert abs(labels[np.fromiter(skewed, dtype=int)].mean() - 0.8) < 0.05
    with pytest.raises(ConfigError, match=r"names label\(s\) 7 that no training object has"):
        BalancedSampler(np.arange(1000), labels, {"7": 1.0}, seed=0)


def test_training_sampler_from_config(hyrax_config):
    config, providers = make(hyrax_config, ("train",))
    assert type(training_sampler(config, providers["train"], np.arange(376), 0)) is EpochSampler
    config["balance"]["enabled"] = True
    with pytest.raises(ConfigError, match="needs label.field"):
        training_sampler(config, providers["train"], np.arange(376), 0)
    config["label"]["field"] = "ring"
    assert isinstance(training_sampler(config, providers["train"], np.arange(376), 0), BalancedSampler)
