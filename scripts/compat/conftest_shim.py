"""Replacement for upstream Hyrax's tests/hyrax/conftest.py, using only the public API.

Upstream's conftest imports two internals (``hyrax.config_utils.ConfigManager`` to stop reading
./hyrax_config.toml, and ``hyrax.datasets.data_provider.DataProvider`` for three fixtures), so with it no
upstream test even collects against another implementation. This file keeps upstream's fixtures, with
the same names and the same configs, and builds the DataProvider fixtures with ``h.prepare()[group]``
(the public way to get a DataProvider from a data_request).

With COMPAT_ALIASES=1 it also installs compat_aliases (the four upstream import paths that upstream's
*user* notebooks use, aliased onto the implementation under test, only where it lacks them) and lazy
stubs for the other upstream modules it lacks (listed in upstream_modules.json), so that a test fails on
what it uses (UpstreamInternalAPI: <name>) rather than its whole file on an import.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import hyrax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compat_aliases  # noqa: E402  (copied beside this file by run_tests.py)

_random_dataset_class = compat_aliases.random_dataset_class

if os.environ.get("COMPAT_ALIASES") == "1":
    compat_aliases.install()
    _names = Path(__file__).resolve().parent / "upstream_modules.json"
    if _names.exists():
        import json

        compat_aliases.install_stubs(json.loads(_names.read_text()))


def _fill_split_defaults_before_every_verb():
    """Workaround pass only, two known blockers lifted before each verb call, so that the tests show what
    fails behind them (both are reported on their own):

    1. a [split] table replaced by hand (h.config["split"] = {...}, as upstream's tests and notebooks do)
       lacks the implementation's defaults ('split.rng_seed' does not exist): the verb gets them back;
    2. upstream's fixtures give HyraxLoopback an empty placeholder weights file, which the implementation
       cannot read: an empty file named by infer.model_weights_file becomes a state dict of HyraxLoopback's
       one parameter (written only when the model is HyraxLoopback).

    h.config itself is left exactly as the test made it. Wraps Hyrax._run_verb, the one place every verb
    method goes through in the implementation under test."""
    from hyrax.hyrax import Hyrax

    original = Hyrax._run_verb
    defaults = dict(Hyrax(setup_logging=False).config["split"])

    def _run_verb(self, name, *args, **kwargs):
        weights = (self.config.get("infer") or {}).get("model_weights_file")
        if (
            weights
            and (self.config.get("model") or {}).get("name") == "HyraxLoopback"
            and Path(weights).is_file()
            and Path(weights).stat().st_size == 0
        ):
            import torch

            torch.save({"unit": torch.ones(1)}, weights)
        saved = self.config.get("split")
        if isinstance(saved, dict) and any(k not in saved for k in defaults):
            self.config["split"] = {**defaults, **saved}
            try:
                return original(self, name, *args, **kwargs)
            finally:
                self.config["split"] = saved
        return original(self, name, *args, **kwargs)

    Hyrax._run_verb = _run_verb


if os.environ.get("COMPAT_FILL_SPLIT_DEFAULTS") == "1":
    _fill_split_defaults_before_every_verb()


# ---- upstream fixtures, same names and configs -------------------------------------------------------


@pytest.fixture(scope="function")
def loopback_hyrax(tmp_path_factory, request):
    results_dir = tmp_path_factory.mktemp("loopback_hyrax_HyraxRandomDataset")

    h = hyrax.Hyrax()
    h.config["model"]["name"] = "HyraxLoopback"
    h.config["train"]["epochs"] = 1
    h.config["data_loader"]["batch_size"] = 5
    h.config["general"]["results_dir"] = str(results_dir)

    h.config["general"]["dev_mode"] = True
    h.config["data_request"] = {
        "train": {
            "data": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": str(tmp_path_factory.mktemp("data")),
                "primary_id_field": "object_id",
            },
        },
        "validate": {
            "data": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": str(tmp_path_factory.mktemp("data")),
                "primary_id_field": "object_id",
            },
        },
        "test": {
            "data": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": str(tmp_path_factory.mktemp("data")),
                "primary_id_field": "object_id",
            },
        },
        "infer": {
            "data": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": str(tmp_path_factory.mktemp("data_infer")),
                "primary_id_field": "object_id",
            },
        },
    }
    h.config["split"] = {"train": 0.6, "validate": 0.2, "test": 0.2}
    h.config["data_set"]["HyraxRandomDataset"]["size"] = 20
    h.config["data_set"]["HyraxRandomDataset"]["seed"] = 0
    h.config["data_set"]["HyraxRandomDataset"]["shape"] = [2, 3]

    weights_file = results_dir / "fakeweights"
    with open(weights_file, "a"):
        pass
    h.config["infer"]["model_weights_file"] = str(weights_file)

    dataset = h.prepare()
    return h, dataset


@pytest.fixture(scope="function")
def loopback_inferred_hyrax(loopback_hyrax):
    h, dataset = loopback_hyrax
    inference_results = h.infer()
    return h, dataset, inference_results


@pytest.fixture(scope="function")
def multimodal_config():
    return {
        "train": {
            "random_0": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": "./in_memory_0",
                "fields": ["object_id", "image", "label"],
                "dataset_config": {"HyraxRandomDataset": {"shape": [2, 16, 16]}},
                "primary_id_field": "object_id",
            },
            "random_1": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": "./in_memory_1",
                "fields": ["image"],
                "dataset_config": {"HyraxRandomDataset": {"shape": [5, 16, 16], "seed": 4200}},
            },
        },
        "infer": {
            "random_0": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": "./in_memory_0",
                "fields": ["object_id", "image", "label"],
                "dataset_config": {"HyraxRandomDataset": {"shape": [2, 16, 16]}},
                "primary_id_field": "object_id",
            },
            "random_1": {
                "dataset_class": "HyraxRandomDataset",
                "data_location": "./in_memory_1",
                "fields": ["image"],
                "dataset_config": {"HyraxRandomDataset": {"shape": [5, 16, 16], "seed": 4200}},
            },
        },
    }


def _provider(multimodal_config):
    # Upstream: DataProvider(h.config, multimodal_config["train"]). Public equivalent: prepare()["train"].
    h = hyrax.Hyrax()
    h.config["data_request"] = multimodal_config
    return h.prepare()["train"]


@pytest.fixture(scope="function")
def data_provider(multimodal_config):
    return _provider(multimodal_config)


@pytest.fixture(scope="function")
def custom_collate_data_provider(multimodal_config):
    random_dataset = _random_dataset_class()

    @staticmethod
    def collate(batch):
        returned_data = {}
        if "image" in batch[0]:
            batch_array = np.stack([item["image"] for item in batch], axis=0)
            returned_data["image"] = batch_array
            returned_data["image_mask"] = np.ones_like(batch_array, dtype=bool)
        if "object_id" in batch[0]:
            returned_data["object_id"] = np.stack([item["object_id"] for item in batch], axis=0)
        if "label" in batch[0]:
            returned_data["label"] = np.stack([item["label"] for item in batch], axis=0)
        return returned_data

    random_dataset.collate = collate
    try:
        yield _provider(multimodal_config)
    finally:
        delattr(random_dataset, "collate")


@pytest.fixture(scope="function")
def custom_field_collate_data_provider(multimodal_config):
    random_dataset = _random_dataset_class()

    @staticmethod
    def collate_image(batch):
        returned_data = {}
        if "image" in batch[0]:
            batch_array = np.stack([item["image"] for item in batch], axis=0)
            returned_data["image"] = batch_array
            returned_data["image_mask"] = np.ones_like(batch_array, dtype=bool)
        return returned_data

    random_dataset.collate_image = collate_image
    try:
        yield _provider(multimodal_config)
    finally:
        delattr(random_dataset, "collate_image")
