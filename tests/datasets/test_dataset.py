"""The HyraxDataset contract: registration, getters, metadata tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from hyrax.datasets import HyraxDataset
from hyrax.errors import DataError
from hyrax.plugins import DATASETS


def test_subclass_registers_by_name_even_inside_a_function(hyrax_config):
    def notebook_cell():
        class CellDataset(HyraxDataset):
            def __len__(self):
                return 3

            def get_flux(self, idx):
                return float(idx)

            def get_object_id(self, idx):
                return f"obj{idx}"

        return CellDataset

    cls = notebook_cell()
    assert DATASETS.get("CellDataset") is cls
    dataset = cls(hyrax_config.config)
    assert dataset.fields() == ["flux", "object_id"]
    assert dataset.getter("flux")(2) == 2.0
    DATASETS.unregister("CellDataset")


@pytest.mark.parametrize("kind", ["astropy", "pandas", "dict"])
def test_metadata_columns_become_fields(hyrax_config, kind):
    columns = {"object_id": ["a", "b"], "ra": [1.0, 2.0]}
    table = {"astropy": Table(columns), "pandas": pd.DataFrame(columns), "dict": columns}[kind]

    class WithMetadata(HyraxDataset):
        def __init__(self, config, data_location=None):
            super().__init__(config, data_location, metadata_table=table)

        def __len__(self):
            return 2

    dataset = WithMetadata(hyrax_config.config)
    assert dataset.fields() == ["object_id", "ra"]
    assert dataset.getter("ra")(1) == 2.0
    assert list(dataset.column("object_id")) == ["a", "b"]
    assert dataset.metadata([1], ["ra"])["ra"].tolist() == [2.0]
    DATASETS.unregister("WithMetadata")


def test_old_style_super_call_with_metadata_table(hyrax_config):
    class OldStyle(HyraxDataset):
        def __init__(self, config, data_location=None):
            super().__init__(config, Table({"object_id": ["x"]}))

        def __len__(self):
            return 1

    assert OldStyle(hyrax_config.config).getter("object_id")(0) == "x"
    DATASETS.unregister("OldStyle")


def test_missing_field_error_lists_fields_and_suggests(hyrax_config):
    from hyrax.datasets.random import HyraxRandomDataset

    dataset = HyraxRandomDataset(hyrax_config.config)
    with pytest.raises(DataError) as error:
        dataset.getter("imag")
    message = str(error.value)
    assert "no field 'imag'" in message and "Did you mean 'image'?" in message
    assert "get_imag(self, idx)" in message


def test_random_dataset_settings(hyrax_config):
    from hyrax.datasets.random import HyraxRandomDataset

    hyrax_config.set_config(
        "data_set.HyraxRandomDataset",
        {
            "size": 20,
            "shape": [3, 4],
            "provided_labels": ["a", "b"],
            "metadata_fields": ["mag"],
            "number_invalid_values": 5,
            "invalid_value_type": "inf",
        },
    )
    dataset = HyraxRandomDataset(hyrax_config.config)
    again = HyraxRandomDataset(hyrax_config.config)
    assert len(dataset) == 20 and dataset.get_image(0).shape == (3, 4)
    assert np.array_equal(dataset.images, again.images)  # seeded
    assert np.isinf(dataset.images).sum() == 5
    assert set(dataset.column("label")) <= {"a", "b"}
    assert "mag" in dataset.fields()
    # "none", as documented (and published): a missing value, NaN in a float image.
    hyrax_config.set_config("data_set.HyraxRandomDataset.invalid_value_type", "none")
    assert np.isnan(HyraxRandomDataset(hyrax_config.config).images).sum() == 5


def test_decals_rings_bundle(hyrax_config):
    from hyrax.datasets.decals_rings import DecalsRingsDataset

    galaxies = DecalsRingsDataset(hyrax_config.config)
    assert len(galaxies) == 376
    image = galaxies.get_image(0)
    assert image.shape == (3, 64, 64) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    assert galaxies.getter("object_id")(0) == "J000411.19+020924.0"
    assert int(galaxies.column("ring").sum()) == 188
    assert galaxies.display(0).shape == (64, 64, 3)
    credits = " ".join(DecalsRingsDataset.__doc__.split())
    assert "Legacy Surveys" in credits and "Walmsley et al. 2022" in credits and "CC BY 4.0" in credits


def test_csv_dataset(tmp_path, hyrax_config):
    from hyrax.datasets.csv import HyraxCSVDataset

    path = tmp_path / "cat.csv"
    pd.DataFrame({"object_id": [5, 6], "mag": [20.1, 21.2]}).to_csv(path, index=False)
    dataset = HyraxCSVDataset(hyrax_config.config, path)
    assert len(dataset) == 2 and dataset.getter("object_id")(1) == "6" and dataset.getter("mag")(0) == 20.1
    with pytest.raises(DataError, match="does not exist"):
        HyraxCSVDataset(hyrax_config.config, tmp_path / "nope.csv")


def test_cifar_reads_standard_batches_and_says_where_they_go(tmp_path, hyrax_config):
    import pickle

    from hyrax.datasets.cifar import HyraxCifarDataset

    with pytest.raises(DataError) as error:
        HyraxCifarDataset(hyrax_config.config, tmp_path)
    assert "cifar-10-python.tar.gz" in str(error.value) and str(tmp_path) in str(error.value)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{n}" for n in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]})
    )
    dataset = HyraxCifarDataset(hyrax_config.config, tmp_path)
    assert len(dataset) == 20
    image = dataset.get_image(0)  # normalised to [-1, 1] as published
    assert image.shape == (3, 32, 32) and image.min() >= -1 and image.max() <= 1 and image.min() < 0
    assert dataset.getter("label_name")(3) == "c9"
    hyrax_config.set_config("data_set.HyraxCifarDataset.use_training_data", False)
    test = HyraxCifarDataset(hyrax_config.config, tmp_path)
    # Ids are positions zero-padded to the width of the set's size, as published ("00000".. at 10,000).
    assert len(test) == 4 and test.getter("object_id")(0) == "0"
    assert dataset.getter("object_id")(19) == "19" and dataset.getter("object_id")(3) == "03"
