"""DataProvider: fields, primary ids, index-aligned and joined secondaries, NaN policy, batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyrax import Hyrax
from hyrax.datasets import HyraxDataset
from hyrax.datasets.provider import DataProvider
from hyrax.errors import ConfigError, DataError
from hyrax.plugins import DATASETS
from tests.conftest import request_config

RANDOM = {"dataset_class": "HyraxRandomDataset"}


@pytest.fixture
def catalog_csv(tmp_path):
    """A secondary catalog keyed by the random dataset's ids, with one id missing and one extra."""
    ids = [str(i) for i in range(100) if i != 7] + ["extra"]
    path = tmp_path / "catalog.csv"
    pd.DataFrame({"object_id": ids, "redshift": np.arange(len(ids)) / 100.0}).to_csv(path, index=False)
    return path


def test_default_fields_are_every_getter(hyrax_config):
    provider = DataProvider(request_config(hyrax_config, data=RANDOM), "train")
    # The random dataset's published defaults: labels [0, 1, 2] and two metadata fields.
    assert provider.fields["data"] == ["image", "label", "meta_field_1", "meta_field_2", "object_id"]
    sample = provider[3]
    assert sample["object_id"] == "3" and sample["data"]["image"].shape == (2, 5, 5)
    assert len(provider) == 100 and provider.ids()[:3].tolist() == ["0", "1", "2"]


def test_requested_field_without_getter_is_an_error(hyrax_config):
    config = request_config(hyrax_config, data={**RANDOM, "fields": ["image", "labl"]})
    with pytest.raises(DataError) as error:
        DataProvider(config, "train")
    message = str(error.value)
    assert (
        "data_request.train.data" in message
        and "labl" in message
        and "Its fields: image, label, meta_field_1" in message
    )


def test_missing_group_lists_groups(hyrax_config):
    config = request_config(hyrax_config, data=RANDOM)
    with pytest.raises(ConfigError, match=r"no \[data_request\.infer\] group.*Groups: train"):
        DataProvider(config, "infer")


def test_no_data_request_lists_datasets(hyrax_config):
    with pytest.raises(ConfigError) as error:
        Hyrax(setup_logging=False).prepare()
    assert "no [data_request]" in str(error.value) and "DecalsRingsDataset" in str(error.value)
    assert "HyraxRandomDataset" in str(error.value)


def test_dataset_without_len_or_id_getter(hyrax_config):
    class NoLength(HyraxDataset):
        def get_object_id(self, idx):
            return "a"

    class NoIds(HyraxDataset):
        def __len__(self):
            return 2

        def get_flux(self, idx):
            return 1.0

    with pytest.raises(DataError, match=r"NoLength has no __len__: add `def __len__\(self\)`"):
        DataProvider(request_config(hyrax_config, data={"dataset_class": "NoLength"}), "train")
    with pytest.raises(DataError, match=r"no getter for its primary id field 'object_id'.*get_object_id"):
        DataProvider(request_config(hyrax_config, data={"dataset_class": "NoIds"}), "train")
    DATASETS.unregister("NoLength")
    DATASETS.unregister("NoIds")


def test_index_aligned_secondary(hyrax_config):
    config = request_config(
        hyrax_config,
        a={**RANDOM, "primary_id_field": "object_id"},
        b={**RANDOM, "fields": ["image"], "dataset_config": {"seed": 5}},
    )
    provider = DataProvider(config, "train")
    sample = provider[4]
    assert not np.array_equal(sample["a"]["image"], sample["b"]["image"])  # b used its own seed
    batch = provider.collate([provider[i] for i in range(3)])
    assert batch["b"]["image"].shape == (3, 2, 5, 5) and "b__matched" not in batch


def test_index_aligned_secondary_of_other_length_is_an_error(hyrax_config):
    config = request_config(
        hyrax_config,
        a={**RANDOM, "primary_id_field": "object_id"},
        b={**RANDOM, "dataset_config": {"size": 5}},
    )
    with pytest.raises(
        DataError, match=r"data_request\.train\.b is aligned by index.*5 rows against 100.*join_field"
    ):
        DataProvider(config, "train")


def test_join_is_a_left_outer_join_with_a_mask(hyrax_config, catalog_csv):
    config = request_config(
        hyrax_config,
        images={**RANDOM, "primary_id_field": "object_id"},
        catalog={
            "dataset_class": "HyraxCSVDataset",
            "data_location": str(catalog_csv),
            "join_field": "object_id",
        },
    )
    provider = DataProvider(config, "train")
    assert provider[8]["catalog"]["redshift"] == pytest.approx(0.07)  # id 8 is row 7 of the catalog
    assert provider[7]["catalog__matched"] is False and provider[7]["catalog"]["redshift"] is None
    batch = provider.collate([provider[i] for i in (6, 7, 8)])
    assert batch["catalog__matched"].tolist() == [True, False, True]
    assert np.isnan(batch["catalog"]["redshift"][1]) and batch["catalog"]["object_id"][1] == ""
    assert "matched: 99 of 100" in provider.summary()
    assert provider.rows["catalog"].dtype == np.int32  # 4 bytes a row
    # the catalog's columns are metadata of the primary objects, unmatched ones blank
    metadata = provider.metadata_for(["8", "7"])
    assert metadata["redshift"][0] == pytest.approx(0.07) and np.isnan(metadata["redshift"][1])


def test_join_with_duplicate_ids_is_an_error(hyrax_config, tmp_path):
    path = tmp_path / "dup.csv"
    pd.DataFrame({"object_id": ["1", "2", "2", "3", "3"], "x": range(5)}).to_csv(path, index=False)
    config = request_config(
        hyrax_config,
        images={**RANDOM, "primary_id_field": "object_id"},
        catalog={"dataset_class": "HyraxCSVDataset", "data_location": str(path), "join_field": "object_id"},
    )
    with pytest.raises(
        DataError, match=r"data_request\.train\.catalog.*2 id\(s\) that occur more than once.*2, 3"
    ):
        DataProvider(config, "train")


def test_join_field_must_exist(hyrax_config, catalog_csv):
    config = request_config(
        hyrax_config,
        images={**RANDOM, "primary_id_field": "object_id"},
        catalog={
            "dataset_class": "HyraxCSVDataset",
            "data_location": str(catalog_csv),
            "join_field": "objid",
        },
    )
    with pytest.raises(DataError, match=r"join_field 'objid' is not a field.*Did you mean 'object_id'"):
        DataProvider(config, "train")


@pytest.fixture
def nan_config(hyrax_config):
    hyrax_config.set_config("data_set.HyraxRandomDataset.number_invalid_values", 30)
    hyrax_config.set_config("data_set.HyraxRandomDataset.size", 10)
    hyrax_config.set_config("data_set.HyraxRandomDataset.seed", 0)  # some objects bad, some good
    return hyrax_config


def _first_bad(provider):
    images = provider.datasets["data"].images
    return int(np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))[0])


def test_nan_pixels_are_an_error_that_names_the_object(nan_config):
    provider = DataProvider(request_config(nan_config, data=RANDOM), "train")
    bad = _first_bad(provider)
    with pytest.raises(DataError) as error:
        provider[bad]
    message = str(error.value)
    assert f"Object {bad}:" in message and "'data.image'" in message and "NaN/inf" in message
    assert 'nan_mode = "zero"' in message


@pytest.mark.parametrize("mode", ["zero", "quantile"])
def test_nan_modes_replace_values(nan_config, mode):
    nan_config.set_config("data_set.nan_mode", mode)
    provider = DataProvider(request_config(nan_config, data=RANDOM), "train")
    bad = _first_bad(provider)
    original = provider.datasets["data"].images[bad].copy()
    image = provider[bad]["data"]["image"]
    assert np.isfinite(image).all()
    replaced = image[~np.isfinite(original)]
    if mode == "zero":
        assert (replaced == 0).all()
    else:
        assert np.allclose(replaced, np.quantile(original[np.isfinite(original)], 0.05))
    assert np.isnan(provider.datasets["data"].images[bad]).any()  # the dataset itself is untouched


def test_skip_bad_objects_is_recorded(nan_config):
    nan_config.set_config("data_set.on_bad_object", "skip")
    provider = DataProvider(request_config(nan_config, data=RANDOM), "train")
    bad = _first_bad(provider)
    assert provider[bad] is None
    assert provider.skipped[0][0] == str(bad)
    batch = provider.collate([provider[i] for i in range(10)])
    assert str(bad) not in batch["object_id"].tolist()


def test_collate_hooks(hyrax_config):
    class Hooked(HyraxDataset):
        def __len__(self):
            return 4

        def get_object_id(self, idx):
            return str(idx)

        def get_spectrum(self, idx):
            return np.ones(idx + 1)  # ragged

        def collate_spectrum(self, samples):  # the published contract: samples in, a dict out
            values = [s["spectrum"] for s in samples]
            padded = np.stack([np.pad(v, (0, 4 - len(v))) for v in values])
            mask = np.stack([np.arange(4) < len(v) for v in values])
            return {"spectrum": padded, "spectrum_mask": mask}

    provider = DataProvider(request_config(hyrax_config, data={"dataset_class": "Hooked"}), "train")
    batch = provider.collate([provider[i] for i in range(4)])
    assert batch["data"]["spectrum"].shape == (4, 4)
    assert batch["data"]["spectrum_mask"].sum() == 1 + 2 + 3 + 4
    DATASETS.unregister("Hooked")

    class OldForm(Hooked):
        def collate_spectrum(self, samples):
            return np.zeros((len(samples), 4))  # an array, not a dict

    provider = DataProvider(request_config(hyrax_config, data={"dataset_class": "OldForm"}), "train")
    with pytest.raises(
        DataError, match=r"collate_spectrum\(samples\) returned ndarray; it must return a dict"
    ):
        provider.collate([provider[i] for i in range(4)])
    DATASETS.unregister("OldForm")


def test_ragged_batch_without_hook_is_an_error_naming_objects(hyrax_config):
    class Ragged(HyraxDataset):
        def __len__(self):
            return 3

        def get_object_id(self, idx):
            return f"obj{idx}"

        def get_image(self, idx):
            return np.zeros((idx + 1, 2))

    provider = DataProvider(request_config(hyrax_config, data={"dataset_class": "Ragged"}), "train")
    with pytest.raises(DataError, match=r"Field 'image' has arrays of different shapes.*obj0.*obj1.*crop_to"):
        provider.collate([provider[i] for i in range(3)])
    DATASETS.unregister("Ragged")


def test_prepare_returns_providers_and_prints_summary(hyrax_config, capsys):
    h = Hyrax(setup_logging=False)
    h.set_config("data_request.train.galaxies", {"dataset_class": "DecalsRingsDataset"})
    h.set_config("data_request.infer.galaxies", {"dataset_class": "DecalsRingsDataset", "fields": ["image"]})
    providers = h.prepare()
    assert set(providers) == {"train", "infer"}
    out = capsys.readouterr().out
    assert "[train] 376 objects" in out and "image: array (3, 64, 64) float32" in out


def test_provider_works_in_a_torch_dataloader_with_workers(hyrax_config):
    from torch.utils.data import DataLoader

    provider = DataProvider(request_config(hyrax_config, data=RANDOM), "train")
    loader = DataLoader(provider, batch_size=16, num_workers=2, collate_fn=provider.collate)
    batches = list(loader)
    assert sum(len(b["object_id"]) for b in batches) == 100
    assert isinstance(batches[0]["data"]["image"], np.ndarray)


def test_augmentation_hooks_and_epoch_start(hyrax_config):
    calls = []

    class Augmented(HyraxDataset):
        def __len__(self):
            return 3

        def get_object_id(self, idx):
            return str(idx)

        def get_image(self, idx):
            return np.zeros(4, np.float32)

        def augment_image(self, data, idx, rng_seed):
            return data + np.random.default_rng(rng_seed).random(4).astype(np.float32)

        def on_epoch_start(self, verb):
            calls.append(verb)

    config = request_config(hyrax_config, data={"dataset_class": "Augmented", "augment": True})
    provider = DataProvider(config, "train")
    provider.start_epoch("train", 0)
    first = provider[1]["data"]["image"]
    assert np.array_equal(first, provider[1]["data"]["image"])  # reproducible within an epoch
    assert not np.array_equal(first, provider[2]["data"]["image"])  # differs between objects
    provider.start_epoch("train", 1)
    assert not np.array_equal(first, provider[1]["data"]["image"])  # and between epochs
    assert calls == ["train", "train"]
    hyrax_config.set_config("data_request.train.data", {"dataset_class": "Augmented", "augment": ["label"]})
    with pytest.raises(DataError, match=r"augment lists 'label'.*no augment_label"):
        DataProvider(hyrax_config.config, "train")
    DATASETS.unregister("Augmented")


def test_duplicate_primary_ids_are_an_error(hyrax_config, tmp_path):
    path = tmp_path / "dupes.csv"
    pd.DataFrame({"object_id": ["a", "b", "a"], "mag": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
    config = request_config(
        hyrax_config, data={"dataset_class": "HyraxCSVDataset", "data_location": str(path)}
    )
    with pytest.raises(
        DataError, match=r"data_request.train.data: 1 object id\(s\) occur more than once \(e.g. a\)"
    ):
        DataProvider(config, "train")


class RootKeyDataset(HyraxDataset):
    """As the published Hyrax's notebooks write one: a setting read from the config's root."""

    def __init__(self, config, data_location=None):
        self.count = config.get("n_objects", 64)
        super().__init__(config, data_location)

    def __len__(self):
        return self.count

    def get_value(self, idx):
        return np.float32(idx)

    def get_object_id(self, idx):
        return str(idx)


def test_dataset_config_keys_reach_the_dataset_as_the_published_hyrax_places_them(hyrax_config, caplog):
    """Was a silent wrong answer: {"n_objects": 32} was put under [data_set] and the dataset used 64."""
    config = request_config(
        hyrax_config, data={"dataset_class": "RootKeyDataset", "dataset_config": {"n_objects": 32}}
    )
    assert len(DataProvider(config, "train")) == 32
    # The published nested form merges into the class's table (its other keys keep their defaults).
    nested = {**RANDOM, "dataset_config": {"HyraxRandomDataset": {"size": 7}}}
    provider = DataProvider(request_config(hyrax_config, "nested", data=nested), "nested")
    assert len(provider) == 7 and provider[0]["data"]["image"].shape == (2, 5, 5)
    # A near-miss of a known key is named (and still set at the root, as published).
    typo = {**RANDOM, "dataset_config": {"sise": 7}}
    with caplog.at_level("WARNING"):
        assert len(DataProvider(request_config(hyrax_config, "typo", data=typo), "typo")) == 100
    assert "Did you mean 'size'?" in caplog.text


def test_a_getter_that_raises_names_the_object_and_can_be_skipped(hyrax_config):
    """Any error in a user's getter names the object and field; on_bad_object = "skip" applies (issue 15)."""

    class Flaky(HyraxDataset):
        def __len__(self):
            return 4

        def get_object_id(self, idx):
            return f"f{idx}"

        def get_flux(self, idx):
            if idx == 2:
                raise KeyError("band 'z' missing")
            return np.ones(3, np.float32)

    provider = DataProvider(request_config(hyrax_config, data={"dataset_class": "Flaky"}), "train")
    with pytest.raises(
        DataError, match=r"Object f2: Flaky.get_flux\(2\) raised KeyError: \"band 'z' missing\""
    ):
        provider[2]
    hyrax_config.set_config("data_set.on_bad_object", "skip")
    provider = DataProvider(request_config(hyrax_config, data={"dataset_class": "Flaky"}), "train")
    assert provider[2] is None and provider.skipped[0][0] == "f2"
    DATASETS.unregister("Flaky")


def test_an_empty_dataset_is_named_not_the_split(tmp_path):
    from hyrax import Hyrax
    from hyrax.errors import ConfigError

    class Empty(HyraxDataset):
        def __len__(self):
            return 0

        def get_image(self, idx):
            return np.zeros(3, np.float32)

        def get_object_id(self, idx):
            return str(idx)

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path))
    h.set_config("model.name", "HyraxLoopback")
    h.set_config("data_request.train.data", {"dataset_class": "Empty"})
    with pytest.raises(ConfigError, match="dataset has no objects: check its data_location"):
        h.train()
    DATASETS.unregister("Empty")
