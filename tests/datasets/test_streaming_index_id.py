"""A table stream's rows named by the catalog's index (issue 28, the compat harness's finding in upstream's
lsdb_stream_dataset notebook): ``primary_id_field = "_healpix_29"``, LSDB's spatial index, is the id of a
catalog with no id column of its own, as published; any other missing name is still a ConfigError.

Both open a train_stream session (a run directory, MLflow): -m slow,
``python -m pytest tests/datasets/test_streaming_index_id.py -m slow``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyrax import Hyrax
from hyrax.errors import ConfigError

pytest.importorskip("lsdb")

MODEL = "tests.datasets.lsdb_models.ColumnEncoder"


@pytest.fixture
def small():
    """The published notebook's 30 points, a catalog made with lsdb.from_dataframe (no id column)."""
    import lsdb

    from hyrax.datasets import LSDBStreamDataset

    frame = pd.DataFrame({"ra": np.linspace(0.0, 350.0, 30), "dec": np.linspace(-80.0, 80.0, 30),
                          "mag": np.linspace(14.0, 18.0, 30)})  # fmt: skip
    catalog = lsdb.from_dataframe(frame, ra_column="ra", dec_column="dec")
    yield LSDBStreamDataset.register_catalog("index_id_small", catalog), catalog
    LSDBStreamDataset.unregister_catalog("index_id_small")


def session_config(tmp_path, location, id_field):
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", MODEL)
    h.config["data_loader"]["batch_size"] = 8
    h.config["data_set"]["LSDBStreamDataset"]["stream_type"] = "catalog"
    h.config["data_set"]["LSDBStreamDataset"]["shuffle"] = False
    h.config["data_request"] = {"train_stream": {"data": {
        "dataset_class": "LSDBStreamDataset", "data_location": location,
        "primary_id_field": id_field, "fields": ["ra", "dec", "mag"]}}}  # fmt: skip
    return h


@pytest.mark.slow
def test_healpix_index_as_the_id_in_a_train_stream_session_as_published(tmp_path, small):
    """The notebook's cell: a one-pass train_stream over the 30 points, ids from _healpix_29."""
    location, catalog = small
    h = session_config(tmp_path, location, "_healpix_29")
    seen = []
    with h.train_stream() as session:
        for batch, _metrics in session:
            seen.extend(batch["object_id"])
    expected = catalog.compute().index.to_numpy().astype(str)
    assert len(seen) == 30 and sorted(seen) == sorted(expected)


@pytest.mark.slow
def test_a_name_neither_column_nor_index_names_both(tmp_path, small):
    location, _ = small
    h = session_config(tmp_path, location, "healpix")
    with pytest.raises(ConfigError) as raised, h.train_stream() as session:
        next(iter(session))
    text = str(raised.value)
    assert "primary_id_field = 'healpix'" in text and "ra, dec, mag" in text and "_healpix_29" in text
