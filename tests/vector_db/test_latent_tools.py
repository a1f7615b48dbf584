"""save_to_database, database_connection (by id and by image) and outliers on the bundled galaxies."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hyrax import Hyrax
from hyrax.datasets import HyraxDataset
from hyrax.datasets.decals_rings import DecalsRingsDataset
from tests.training.test_training import read_tensorboard_scalars
from tests.vector_db.test_vector_db import delete_through_the_backend

ANOMALIES = 2


class GalaxiesWithAnomalies(HyraxDataset):
    """The 376 bundled galaxies followed by two noise images (uniform noise at two levels).

    Blank images are not used: for an autoencoder trained a few epochs they land among the faint
    galaxies (most of every cutout is dark sky), which is a fair answer, not an outlier.
    """

    def __init__(self, config, data_location=None):
        self.galaxies = DecalsRingsDataset(config)
        rng = np.random.default_rng(7)
        self.extra = [(level * rng.random((3, 64, 64))).astype(np.float32) for level in (1.0, 0.8)]
        ra = np.concatenate([self.galaxies.column("ra"), np.full(ANOMALIES, np.nan)])
        super().__init__(config, data_location, metadata_table={"ra": ra})

    def __len__(self):
        return len(self.galaxies) + ANOMALIES

    def get_image(self, idx):
        return (
            self.galaxies.get_image(idx) if idx < len(self.galaxies) else self.extra[idx - len(self.galaxies)]
        )

    def get_object_id(self, idx):
        return (
            self.galaxies.getter("object_id")(idx)
            if idx < len(self.galaxies)
            else f"anomaly{idx - len(self.galaxies)}"
        )


@pytest.fixture(scope="module")
def inferred(tmp_path_factory):
    results = tmp_path_factory.mktemp("latent") / "results"
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(results))
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("model.HyraxAutoencoder.latent_dim", 16)
    h.set_config("data_request.train.data", {"dataset_class": "DecalsRingsDataset"})
    h.set_config("data_request.infer.data", {"dataset_class": "GalaxiesWithAnomalies"})
    h.set_config("train.epochs", 4)
    h.set_config("data_set.seed", 3)
    h.set_config("optimizer.name", "torch.optim.Adam")
    h.set_config("'torch.optim.Adam'.lr", 3e-3)
    h.set_config("data_loader.batch_size", 32)
    h.set_config("data_loader.num_workers", 0)
    h.train()
    h.infer()
    return h


def test_outliers_rank_injected_anomalies_first(inferred):
    ranked = inferred.outliers(top=20)
    top = ranked["object_id"].tolist()
    cut = int(np.ceil(0.01 * (376 + ANOMALIES)))  # the top 1%: 4 of 379
    assert {f"anomaly{i}" for i in range(ANOMALIES)} <= set(top[:cut]), ranked.head(8).to_string()
    assert list(ranked.columns[:3]) == ["rank", "object_id", "outlier_score"]
    assert ranked["outlier_score"].is_monotonic_decreasing


def test_outliers_with_metadata_and_incremental_rescoring(inferred):
    from hyrax.vector_db.connection import results_run
    from hyrax.vector_db.outliers import score_run

    run = results_run(inferred.config)
    assert score_run(run) == 0  # everything is scored already: nothing is recomputed
    galaxies = inferred.outliers()
    real = galaxies[~galaxies["object_id"].str.startswith("anomaly")]
    assert "ra" in galaxies.columns and real["ra"].notna().all()
    ra = dict(
        zip(
            DecalsRingsDataset(inferred.config).column("object_id"),
            DecalsRingsDataset(inferred.config).column("ra"),
            strict=True,
        )
    )
    assert all(ra[o] == r for o, r in zip(real["object_id"], real["ra"], strict=True))


@pytest.mark.parametrize("backend", ["lance", "qdrant", "chromadb"])
def test_search_by_id_and_image(inferred, backend, tmp_path, monkeypatch):
    h = Hyrax(setup_logging=False)
    for key in ("general.results_dir", "model.name", "model.HyraxAutoencoder.latent_dim"):
        h.set_config(
            key,
            inferred.config[key.split(".")[0]][key.split(".", 1)[1]]
            if key.count(".") == 1
            else inferred.config["model"]["HyraxAutoencoder"]["latent_dim"],
        )
    h.set_config("vector_db.name", backend)
    h.set_config("vector_db.vector_db_dir", str(tmp_path / backend))
    connection = h.save_to_database()
    connection = h.save_to_database()  # again: nothing twice
    assert connection.index.count() == 376 + ANOMALIES
    assert read_tensorboard_scalars(tmp_path / backend / "tensorboard")["vector_db/total_batches"]
    galaxy = DecalsRingsDataset(h.config)
    first = galaxy.getter("object_id")(10)
    # Counting is the slow part of opening and searching chromadb (~10 ms at 100,000): counted once.
    counted, real_count = [], type(connection.index).count
    monkeypatch.setattr(type(connection.index), "count", lambda self: counted.append(1) or real_count(self))
    connection = h.database_connection()
    connection.search_by_id(first, k=5)
    assert len(counted) == 1
    found = connection.search_by_id(first, k=5)  # the published form: {query id: neighbour ids}
    assert found[first][0] == first and found.distances[first][0] == pytest.approx(0, abs=1e-3)
    found = connection.search_by_image(galaxy.get_image(10), k=3)
    assert found[0][0] == first  # the image went through prepare_inputs and the model
    # get_by_id -> {id: vector}; search_by_vector takes a list and keys by position in it.
    second = galaxy.getter("object_id")(11)
    vectors = connection.get_by_id([first, second])
    assert list(vectors) == [first, second] and vectors[first].ndim == 1
    found = connection.search_by_vector([vectors[first], vectors[second]], k=2)
    assert (found[0][0], found[1][0]) == (first, second) and len(found.distances[1]) == 2


@pytest.mark.parametrize("backend", ["lance", "qdrant"])
def test_published_save_to_database_output_dir_and_database_dir(inferred, backend, tmp_path):
    """save_to_database(input_dir=, output_dir=) then database_connection(database_dir=) as published:
    the index directory alone is enough to open the connection again (it names its infer run)."""
    from hyrax.config_utils import find_most_recent_results_dir
    from hyrax.vector_db.connection import results_run

    h = Hyrax(config_file=results_run(inferred.config) / "runtime_config.toml", setup_logging=False)
    h.set_config("vector_db.name", backend)
    infer_dir = find_most_recent_results_dir(h.config, "infer")
    assert find_most_recent_results_dir(h.config, "vector-db") == infer_dir
    out = tmp_path / "my_db"
    h.save_to_database(input_dir=infer_dir, output_dir=out)
    fresh = Hyrax(setup_logging=False)  # another session: only the directory is known
    fresh.set_config("general.results_dir", str(tmp_path / "elsewhere"))
    conn = fresh.database_connection(database_dir=out)
    assert conn.index.backend == backend and conn.run == infer_dir
    first = DecalsRingsDataset(h.config).getter("object_id")(3)
    assert conn.search_by_id(first, k=2)[first][0] == first
    # the published return types: {id: a list of ids}, equal to a plain dict and JSON-ready
    found = conn.search_by_id(first, k=2)
    assert found == {first: found[first]} and type(found[first]) is list and json.dumps(found)
    assert json.dumps(conn.search_by_vector([conn.get_by_id([first])[first]], k=1)) == json.dumps(
        {0: [first]}
    )
    # and the published TensorBoard scalars of the insertion, in the index directory
    scalars = read_tensorboard_scalars(out / "tensorboard")
    assert {
        "vector_db/batch_insertion_time",
        "vector_db/vectors_per_batch",
        "vector_db/insertion_rate_vectors_per_second",
        "vector_db/total_insertion_time",
        "vector_db/total_batches",
        "vector_db/average_batch_insertion_time",
    } <= set(scalars)
    assert sum(value for _, value in scalars["vector_db/vectors_per_batch"]) == 376 + ANOMALIES


def test_database_connection_cli(inferred):
    config = inferred.config
    from hyrax.vector_db.connection import results_run

    run = results_run(config)
    first = DecalsRingsDataset(config).getter("object_id")(0)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyrax",
            "database_connection",
            "--id",
            first,
            "-k",
            "3",
            "-c",
            str(run / "runtime_config.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[1] == first
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyrax",
            "database_connection",
            "--id",
            "NOPE",
            "-c",
            str(run / "runtime_config.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1 and "NOPE are not in the" in missing.stderr


def test_published_cli_options_of_the_vector_db_verbs(inferred, tmp_path):
    """hyrax save_to_database -i RUN -o DIR, then database_connection -d DIR, as the published CLI."""
    from hyrax.vector_db.connection import results_run
    from tests.conftest import run_hyrax

    run = results_run(inferred.config)
    config = run / "runtime_config.toml"
    out = tmp_path / "db"
    saved = run_hyrax("save_to_database", "-i", run, "-o", out, "-c", config, timeout=300)
    assert saved.returncode == 0, saved.stderr
    assert (out / "hyrax_vector_db.toml").is_file()
    first = DecalsRingsDataset(inferred.config).getter("object_id")(0)
    found = run_hyrax("database_connection", "--id", first, "-k", "2", "-d", out, "-c", config, timeout=300)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0].split()[1] == first


@pytest.mark.parametrize("backend", ["chromadb", "qdrant"])
def test_an_interrupted_index_is_never_searched_as_whole(inferred, backend, tmp_path):
    """The state a killed save_to_database leaves (a save begun, part of the vectors in): searching it is
    refused with how far it got; running save_to_database again completes it (issue 15)."""
    from hyrax.results.store import ResultDataset
    from hyrax.vector_db.base import VectorDBError
    from hyrax.vector_db.connection import open_index, results_run

    h = Hyrax(config_file=results_run(inferred.config) / "runtime_config.toml", setup_logging=False)
    h.set_config("vector_db.name", backend)
    h.set_config("vector_db.vector_db_dir", str(tmp_path / backend))
    run = results_run(h.config)
    results = ResultDataset(h.config, run)
    index = open_index(h.config, run)
    index.mark_building(len(results))
    ids, vectors = next(results.iter_batches(100))
    index.insert(ids, vectors.reshape(len(vectors), -1))  # ... and then the process was killed
    with pytest.raises(
        VectorDBError, match=rf"unfinished: save_to_database stopped after 100 of {len(results)} objects"
    ):
        h.database_connection()
    connection = h.save_to_database()  # continues
    assert connection.index.count() == len(results) and connection.index.is_complete


@pytest.mark.parametrize(
    "backend",
    ["chromadb", pytest.param("qdrant", marks=pytest.mark.slow)],  # qdrant's local mode: ~10 s
)
def test_an_index_that_says_complete_is_checked_not_trusted(inferred, backend, tmp_path):
    """An index that says complete holds every vector. When vectors are lost after a whole save, the
    index counts as unfinished (its count is checked against the objects the save recorded), searching it
    is refused saying how many it holds, a save is not marked complete while the index is short, and
    save_to_database run again puts the missing vectors back."""
    from hyrax.results.store import ResultDataset
    from hyrax.vector_db.base import VectorDBError
    from hyrax.vector_db.connection import results_run

    h = Hyrax(config_file=results_run(inferred.config) / "runtime_config.toml", setup_logging=False)
    h.set_config("vector_db.name", backend)
    h.set_config("vector_db.vector_db_dir", str(tmp_path / backend))
    results = ResultDataset(h.config, results_run(h.config))
    total = len(results)
    index = h.save_to_database().index
    assert index.is_complete and index.count() == total
    lost = [str(i) for i in results.ids()[:48]]
    delete_through_the_backend(index, lost)
    assert index.count() == total - 48 and not index.is_complete
    with pytest.raises(VectorDBError, match=rf"unfinished: holds {total - 48} of the {total} objects"):
        h.database_connection()
    index.mark_building(total)
    with pytest.raises(VectorDBError, match=rf"holds {total - 48} vectors after inserting {total}: it stays"):
        index.mark_complete(total)
    assert not index.is_complete
    again = h.save_to_database().index  # a run again re-inserts every vector: the lost ones come back
    assert again.count() == total and again.is_complete
    np.testing.assert_allclose(again.get_vectors(lost), results.lookup_many(lost).reshape(48, -1), atol=1e-5)


@pytest.mark.parametrize("backend", ["chromadb", "qdrant"])
def test_an_index_knows_the_results_it_was_built_from(inferred, backend, tmp_path):
    """An index directory holds one run's vectors, as they were (issue 15): saving another run into it, or
    searching it with another run's data, or with results that changed since, is refused naming both."""
    import shutil

    from hyrax.results.store import ResultWriter
    from hyrax.vector_db.base import VectorDBError
    from hyrax.vector_db.connection import results_run

    first = results_run(inferred.config)
    second = tmp_path / "results" / first.name.replace("infer", "infer-copy")
    shutil.copytree(first, second)
    h = Hyrax(config_file=first / "runtime_config.toml", setup_logging=False)
    h.set_config("vector_db.name", backend)
    h.set_config("vector_db.vector_db_dir", str(tmp_path / backend))
    h.save_to_database(input_dir=first)
    with pytest.raises(VectorDBError, match=rf"built from the results of {first}, not of {second}"):
        h.save_to_database(input_dir=second)
    with pytest.raises(VectorDBError, match="searching it with this run's data would mix the two"):
        h.database_connection(database_dir=second)
    assert h.database_connection(database_dir=first).index.count() == 378
    h.set_config("vector_db.vector_db_dir", str(tmp_path / f"{backend}2"))
    h.save_to_database(input_dir=second)
    with ResultWriter(second, shape=(16,), resume=True) as writer:  # the results change after indexing
        writer.write(np.array(["late"]), np.zeros((1, 16), np.float32))
    with pytest.raises(VectorDBError, match="another version of the results.*results_rows 378 -> 379"):
        h.database_connection(database_dir=second)
