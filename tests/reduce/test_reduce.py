"""reduce_dimensions: order and ids, saved reducers, one t-SNE embedding, UMAP, errors."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax import Hyrax
from hyrax.reduce.base import ReducerError
from hyrax.reduce.pca import PCAReducer
from hyrax.reduce.tsne import TSNEReducer
from hyrax.results.store import ResultDataset, ResultWriter


@pytest.fixture
def infer_run(tmp_path):
    """A complete infer run whose vectors have cluster structure: 600 objects, 16-d, 3 clusters."""
    from hyrax.config import ConfigManager
    from hyrax.results.run_dir import RunDir

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    vectors = (centres[np.arange(600) % 3] + rng.normal(size=(600, 16))).astype(np.float32)
    config = ConfigManager().config
    config["general"]["results_dir"] = str(tmp_path / "results")
    with RunDir.create(config, "infer") as run, ResultWriter(run.path, (16,), "float32") as writer:
        writer.write(np.char.add("obj", np.arange(600).astype(str)), vectors)
    return run.path, vectors


def reduce_hyrax(tmp_path, name="pca", **settings) -> Hyrax:
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("reduce_dimensions.name", name)
    h.set_config("reduce_dimensions.batch_size", 128)
    for key, value in settings.items():
        h.set_config(key, value)
    return h


def test_reduce_output_aligned_with_inference_ids(tmp_path, infer_run):
    run, vectors = infer_run
    reduced = reduce_hyrax(tmp_path).reduce_dimensions()
    assert reduced.ids().tolist() == ResultDataset(data_location=run).ids().tolist()
    assert reduced.shape == (2,) and len(reduced) == 600
    expected = PCAReducer.load(reduced.data_location / "reducer").transform(vectors)
    assert np.allclose(reduced[np.arange(600)], expected, atol=1e-4)


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_saved_reducer_reloads_to_the_same_coordinates(tmp_path, infer_run):
    first = reduce_hyrax(
        tmp_path, "tsne", **{"reduce_dimensions.tsne.fit_sample_size": 200}
    ).reduce_dimensions()
    again = reduce_hyrax(
        tmp_path, "tsne", **{"reduce_dimensions.model_path": str(first.data_location / "reducer")}
    ).reduce_dimensions()
    rows = np.arange(600)
    assert np.array_equal(first[rows], again[rows])


@pytest.mark.slow  # a t-SNE fit in batches (~23 s): the default suite stays under ten minutes on 2 cores
def test_tsne_is_one_embedding_across_batches(infer_run):
    _, vectors = infer_run
    reducer = TSNEReducer(seed=0).fit(vectors[:200])
    whole = reducer.transform(vectors)
    pieces = np.concatenate([reducer.transform(vectors[i : i + 77]) for i in range(0, 600, 77)])
    assert np.allclose(whole, pieces, atol=1e-5)
    # Fitted points sit on their own embedding, and clusters stay apart in the one map.
    assert np.allclose(whole[:200], reducer.arrays["embedding"], atol=1e-4)
    labels = np.arange(600) % 3
    centres = np.array([whole[labels == c].mean(axis=0) for c in range(3)])
    spread = max(np.linalg.norm(whole[labels == c] - centres[c], axis=1).mean() for c in range(3))
    assert (
        min(np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)) > 2 * spread
    )


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_umap_fits_a_sample_and_places_the_rest(tmp_path, infer_run):
    reduced = reduce_hyrax(
        tmp_path,
        "umap",
        **{"reduce_dimensions.umap.fit_sample_size": 300, "reduce_dimensions.n_components": 3},
    ).reduce_dimensions()
    coordinates = reduced[np.arange(600)]
    assert coordinates.shape == (600, 3) and np.isfinite(coordinates).all()
    # Fitted or placed, every object lands among its own cluster: its nearest other object on the map is
    # of the same cluster (3 clusters in latent space; chance would give 1/3).
    labels = np.arange(600) % 3
    distances = np.linalg.norm(coordinates[:, None, :] - coordinates[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(axis=1)] == labels).mean() > 0.98


@pytest.mark.slow  # a whole UMAP fit (~15 s) to check an alias
def test_umap_verb_is_a_warning_alias(tmp_path, infer_run):
    with pytest.warns(FutureWarning, match="now `reduce_dimensions`"):
        reduced = reduce_hyrax(tmp_path).umap()
    # Named after the algorithm, as the published Hyrax names reduce runs.
    assert reduced.data_location.name.split("-")[2] == "umap"


def test_published_verb_arguments(tmp_path, infer_run):
    """reduce_dimensions(algorithm=, input_dir=, model_path=) as published; the run is named "pca"."""
    from hyrax.results.run_dir import find_latest_run

    h = reduce_hyrax(tmp_path, name="umap")
    source = find_latest_run(h.config["general"]["results_dir"], "infer")
    first = h.reduce_dimensions(algorithm="pca", input_dir=source)
    assert first.data_location.name.split("-")[2] == "pca"
    saved = first.data_location / "reducer"
    again = h.reduce_dimensions(algorithm="pca", model_path=saved)
    np.testing.assert_allclose(again.column("data"), first.column("data"), rtol=1e-5)
    # The run itself, or the published file name in it (<run>/pca.pickle), find the saved reducer.
    run_again = h.reduce_dimensions(algorithm="pca", model_path=first.data_location)
    np.testing.assert_allclose(run_again.column("data"), first.column("data"), rtol=1e-5)
    with pytest.warns(FutureWarning, match="pca.pickle is the published Hyrax's file"):
        h.reduce_dimensions(algorithm="pca", model_path=first.data_location / "pca.pickle")
    # The published per-algorithm key applies to its algorithm only.
    h.set_config("reduce_dimensions.pca.model_path", str(saved))
    assert len(h.reduce_dimensions(algorithm="umap")) == len(first)  # umap fits its own
    assert h.config["reduce_dimensions"]["name"] == "umap"  # the arguments were for that call only


def test_reducer_errors(tmp_path, infer_run):
    _, vectors = infer_run
    reducer = PCAReducer().fit(vectors)
    with pytest.raises(ReducerError, match="fitted on 16-dimensional vectors; these have 8"):
        reducer.transform(vectors[:, :8])
    with pytest.raises(ReducerError, match="n_components must be 2 or 3"):
        PCAReducer(n_components=4)
    saved = reducer.save(tmp_path / "pca")
    h = reduce_hyrax(
        tmp_path, **{"reduce_dimensions.model_path": str(saved), "reduce_dimensions.n_components": 3}
    )
    with pytest.raises(ReducerError, match="gives 2 components; reduce_dimensions.n_components is 3"):
        h.reduce_dimensions()


def test_no_inference_run_says_what_to_run(tmp_path):
    from hyrax.errors import ResultsError

    with pytest.raises(ResultsError, match=r"No complete 'infer' run.*hyrax infer"):
        reduce_hyrax(tmp_path).reduce_dimensions()


def test_reduce_streams_writing_its_first_batch_before_reading_its_last(tmp_path, infer_run, monkeypatch):
    """An instrumented reader and writer: batches are written as they are transformed, with at most
    two waiting, so memory does not grow with the number of objects."""
    from hyrax.reduce import run as reduce_module

    events: list[str] = []
    reader = ResultDataset.iter_batches

    def reading(self, *args, **kwargs):
        for item in reader(self, *args, **kwargs):
            events.append("read")
            yield item

    class RecordingWriter(ResultWriter):
        def write(self, object_ids, data):
            events.append("write")
            super().write(object_ids, data)

    monkeypatch.setattr(ResultDataset, "iter_batches", reading)
    monkeypatch.setattr(reduce_module, "ResultWriter", RecordingWriter)
    reduce_hyrax(tmp_path, "pca", **{"reduce_dimensions.batch_size": 50}).reduce_dimensions()
    reads = [i for i, event in enumerate(events) if event == "read"]
    writes = [i for i, event in enumerate(events) if event == "write"]
    assert len(reads) == len(writes) == 12  # 600 rows in batches of 50
    assert writes[0] < reads[-1]
    for number, position in enumerate(writes):  # when batch n is written, at most n + 3 were read
        assert sum(1 for r in reads if r < position) <= number + 3


def test_a_map_of_one_object_is_a_clear_error():
    with pytest.raises(
        ReducerError, match="pca needs at least 2 objects to fit a 2-D map; the results hold 1"
    ):
        PCAReducer().fit(np.ones((1, 8), np.float32))
