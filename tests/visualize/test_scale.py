"""The map and look-ups at 100,000 objects: per-request work is a look-up, never a pass over every id."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax import Hyrax


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A real infer run of 100,000 objects and a PCA map of it."""
    results = tmp_path_factory.mktemp("scale") / "results"
    h = Hyrax(setup_logging=False)
    for key, value in {
        "general.results_dir": str(results),
        "model.name": "HyraxLoopback",
        "data_set.HyraxRandomDataset.size": 100_000,
        "data_set.HyraxRandomDataset.shape": [1, 4, 4],
        "data_loader.num_workers": 0,
        "data_loader.batch_size": 4096,
        "reduce_dimensions.name": "pca",
    }.items():
        h.set_config(key, value)
    h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("train.epochs", 1)
    h.set_config("split.train", 1000)
    h.set_config("split.validate", 100)
    h.set_config("data_request.validate.data", {"dataset_class": "HyraxRandomDataset"})
    h.train()
    results_table = h.infer()
    h.reduce_dimensions()
    return h, results_table


def test_thumbnails_and_lookups_build_no_index_per_request(mapped, monkeypatch):
    from hyrax.datasets.ids import IdIndex
    from hyrax.datasets.provider import DataProvider
    from hyrax.results.store import ResultDataset
    from hyrax.visualize.stretch import placeholder_png

    h, results = mapped
    view = h.visualize()
    live = view.live
    live.thumbnail_png(results.ids_at([0])[0])  # opens the data once
    calls = {"index": 0, "all ids": 0}

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(IdIndex, "build", classmethod(counting("index", IdIndex.build.__func__)))
    monkeypatch.setattr(DataProvider, "ids", counting("all ids", DataProvider.ids))
    monkeypatch.setattr(ResultDataset, "id_column", counting("all ids", ResultDataset.id_column))
    ids = results.ids_at(np.random.default_rng(3).choice(len(results), 40, replace=False))
    tiles = [live.thumbnail_png(object_id) for object_id in ids[:20]]
    vectors = [h.lookup(id=object_id) for object_id in ids[20:]]
    assert calls == {"index": 0, "all ids": 0}
    assert all(tile != placeholder_png() for tile in tiles)
    assert all(np.array_equal(vector, results.lookup(i)) for vector, i in zip(vectors, ids[20:], strict=True))
    assert (
        live.rows_of(ids[:3]).tolist()
        == ResultDataset(data_location=live.reduce_run).rows_of(ids[:3]).tolist()
    )


def test_map_holds_little_per_object(mapped):
    h, _ = mapped
    source = h.visualize().source
    held = source.x.nbytes + source.y.nbytes + source.priority.nbytes
    assert held == 12 * source.total  # coordinates and a sampling priority; ids and metadata stay on disk
