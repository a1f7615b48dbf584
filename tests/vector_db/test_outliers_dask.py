"""Outlier scores on Dask workers (src/hyrax/vector_db/outlier_shards.py, src/hyrax/cluster.py): the same
scores, bit for bit, as one process, by the lists and by the graph; a worker killed mid-shard; the config.

Default suite: the lists on an in-process LocalCluster of 2 workers reached by its address. ``-m slow``:
the graph, worker processes ("local"), and a worker process killed in its shard (lists and graph)."""

from __future__ import annotations

import shutil

import lance
import numpy as np
import pytest

from hyrax.cluster import dask_client, scheduler_setting
from hyrax.errors import ConfigError
from hyrax.vector_db import kth_neighbour, outlier_shards
from hyrax.vector_db.outliers import read_scores, score_run, scores_metadata, scores_path
from tests.vector_db.test_outliers import clustered, write_run


def dask_config(scheduler, workers=2):
    return {"general": {"threads": False}, "dask": {"scheduler": scheduler, "workers": workers,
                                                     "threads_per_worker": 1, "memory_limit": "auto"}}  # fmt: skip


@pytest.fixture(scope="module")
def threads_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        yield cluster


def score_both(tmp_path, vectors, scheduler, **settings):
    """Score the same vectors in this process and on the cluster; (scores alone, scores on Dask, their
    metadata)."""
    alone, spread = write_run(tmp_path / "alone", vectors), tmp_path / "spread"
    shutil.copytree(alone, spread)
    score_run(alone, config=dask_config("none"), **settings)
    score_run(spread, config=dask_config(scheduler), **settings)
    rows = np.arange(len(vectors))
    return (
        read_scores(alone, rows),
        read_scores(spread, rows),
        scores_metadata(alone),
        scores_metadata(spread),
    )


def assert_same_bits(first, second):
    assert first.dtype == second.dtype == np.float32
    differ = np.flatnonzero(first.view(np.uint32) != second.view(np.uint32))
    assert not len(differ), (
        f"{len(differ)} scores differ, first at row {differ[0]}: {first[differ[0]]} != {second[differ[0]]}"
    )


def small_blocks(monkeypatch):
    monkeypatch.setattr(kth_neighbour, "BATCH_BYTES", 1)  # blocks of ~1,024 objects: several shards


def test_lists_on_two_workers_give_the_scores_of_one_process(tmp_path, monkeypatch, threads_cluster):
    small_blocks(monkeypatch)
    vectors = clustered(4000, seed=2)
    alone, spread, made_alone, made_spread = score_both(
        tmp_path, vectors, threads_cluster.scheduler_address, k=5, nlist=16, nprobe=3
    )
    assert made_spread["search"] == made_alone["search"] == "partitioned"
    assert_same_bits(alone, spread)
    assert made_alone == made_spread
    assert not list((tmp_path / "spread").rglob(".outliers-*"))  # the shared lists file is removed


@pytest.mark.slow
def test_graph_on_two_workers_gives_the_scores_of_one_process(tmp_path, monkeypatch, threads_cluster):
    monkeypatch.setattr(kth_neighbour, "EXACT_LIMIT", 0)
    monkeypatch.setattr(kth_neighbour, "OBJECTS_PER_LIST", 50)
    monkeypatch.setattr(kth_neighbour, "GRAPH_ABOVE_PROBES", 0)  # the graph, at a size that is quick
    monkeypatch.setattr(outlier_shards, "GRAPH_SHARD_ROWS", (300, 2**20))  # several ranges of rows
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((1500, 16)).astype(np.float32)
    alone, spread, made_alone, made_spread = score_both(
        tmp_path, vectors, threads_cluster.scheduler_address, k=10
    )
    assert made_spread["search"] == made_alone["search"] == "graph"
    assert_same_bits(alone, spread)
    assert made_alone == made_spread
    assert not list((tmp_path / "spread").rglob(".outliers-*"))


def test_scheduler_setting_and_its_errors():
    assert scheduler_setting(None) == "none" and scheduler_setting({"general": {}}) == "none"
    assert scheduler_setting(dask_config(" tcp://10.0.0.1:8786 ")) == "tcp://10.0.0.1:8786"
    with pytest.raises(ConfigError, match=r'dask.scheduler must be "none", "local" or the address'):
        scheduler_setting(dask_config(3))
    with pytest.raises(ConfigError, match=r"got 'nonsense'"), dask_client(dask_config("nonsense")):
        pass
    with (
        pytest.raises(ConfigError, match=r"dask.workers .* >= 1; got 0"),
        dask_client(dask_config("local", 0)),
    ):
        pass


def test_the_published_call_scores_on_dask_when_the_config_asks(tmp_path, monkeypatch, threads_cluster):
    """As a 0.13 user writes it: h.config[...] set, then h.outliers(); with [dask] the same ranking."""
    from hyrax import Hyrax

    small_blocks(monkeypatch)
    vectors = clustered(1500, seed=4)
    rankings = []
    for scheduler in ("none", threads_cluster.scheduler_address):
        h = Hyrax()
        run = write_run(tmp_path / f"run-{len(rankings)}", vectors)
        h.config["outliers"]["nlist"], h.config["outliers"]["nprobe"] = 6, 2
        h.config["dask"]["scheduler"] = scheduler
        rankings.append(h.outliers(top=20, input_dir=str(run)))
    assert rankings[0]["object_id"].tolist() == rankings[1]["object_id"].tolist()
    assert np.array_equal(rankings[0]["outlier_score"].to_numpy(), rankings[1]["outlier_score"].to_numpy())


@pytest.mark.slow
def test_local_worker_processes_give_the_scores_of_one_process(tmp_path, monkeypatch):
    small_blocks(monkeypatch)
    vectors = clustered(6000, seed=2)
    alone, spread, made_alone, made_spread = score_both(tmp_path, vectors, "local", k=5, nlist=24, nprobe=3)
    assert_same_bits(alone, spread)
    assert made_alone == made_spread


@pytest.mark.slow
@pytest.mark.parametrize("search", ["partitioned", "graph"])
def test_a_worker_killed_in_its_shard_leaves_the_scores_exact_and_written_once(tmp_path, monkeypatch, search):
    from distributed import Client, LocalCluster

    small_blocks(monkeypatch)
    if search == "graph":
        monkeypatch.setattr(kth_neighbour, "EXACT_LIMIT", 0)
        monkeypatch.setattr(kth_neighbour, "OBJECTS_PER_LIST", 50)
        monkeypatch.setattr(kth_neighbour, "GRAPH_ABOVE_PROBES", 0)
        monkeypatch.setattr(outlier_shards, "GRAPH_SHARD_ROWS", (300, 2**20))
        vectors, settings = np.random.default_rng(5).standard_normal((3000, 32)).astype(np.float32), {"k": 10}
    else:
        vectors, settings = clustered(6000, seed=2), {"k": 5, "nlist": 24, "nprobe": 3}
    alone, spread = write_run(tmp_path / "alone", vectors), tmp_path / "spread"
    shutil.copytree(alone, spread)
    score_run(alone, config=dask_config("none"), **settings)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        armed = sorted(client.scheduler_info()["workers"])[0]
        # Arm the fault point in one worker process only: it kills itself at its first shard; the nanny
        # starts a fresh (unarmed) process and the scheduler gives the shard to a worker again.
        client.run(
            exec, "import hyrax.faults as f; f._TARGET, f._ARRIVAL = 'outliers.shard', 1", workers=[armed]
        )
        score_run(spread, config=dask_config(cluster.scheduler_address), **settings)
        assert armed not in client.scheduler_info()["workers"], "the armed worker was never killed"
    rows = np.arange(len(vectors))
    assert_same_bits(read_scores(alone, rows), read_scores(spread, rows))
    assert scores_metadata(spread)["search"] == search
    assert len(lance.dataset(str(scores_path(spread))).versions()) == 1  # written once


def test_knn_gives_the_same_bits_on_one_thread_and_on_three():
    """Above faiss's BLAS threshold (8,000 16-d queries in one call) its distances depend on the thread
    count; knn_on_any_threads keeps every call below it (the cause of 156 differing scores in 60,000)."""
    import faiss

    from hyrax.compute import knn_on_any_threads

    rng = np.random.default_rng(1)
    queries = rng.standard_normal((20_000, 16)).astype(np.float32)
    candidates = (queries[:1000] + 0.3 * rng.standard_normal((1000, 16))).astype(np.float32)
    found = {}
    try:
        for count in (1, 3):
            faiss.omp_set_num_threads(count)
            found[count] = knn_on_any_threads(queries, candidates, 11)
    finally:
        faiss.omp_set_num_threads(1)
    assert_same_bits(found[1][0].ravel(), found[3][0].ravel())
    assert np.array_equal(found[1][1], found[3][1])


def test_scores_on_workers_of_one_thread_equal_those_of_three_threads_in_the_scorer(
    tmp_path, monkeypatch, threads_cluster
):
    """The defect of 156 in 60,000 at a size that is quick: faiss's BLAS threshold lowered so that the
    searches of a few thousand objects take the BLAS path; the scorer uses 3 threads, a worker 1."""
    import faiss

    small_blocks(monkeypatch)
    monkeypatch.setattr(faiss.cvar, "distance_compute_blas_threshold", 16 * 64)
    vectors = clustered(4000, seed=2)
    alone, spread = write_run(tmp_path / "alone", vectors), tmp_path / "spread"
    shutil.copytree(alone, spread)
    settings = {"k": 5, "nlist": 8, "nprobe": 3}
    config = dask_config("none")
    config["general"]["threads"] = 3
    score_run(alone, config=config, **settings)
    config["dask"]["scheduler"] = threads_cluster.scheduler_address
    score_run(spread, config=config, **settings)
    rows = np.arange(len(vectors))
    assert_same_bits(read_scores(alone, rows), read_scores(spread, rows))


def test_a_missing_shard_is_an_error_naming_what_was_planned(tmp_path, monkeypatch, threads_cluster):
    """Every block of lists is searched once: a worker that returned one block fewer is refused."""
    small_blocks(monkeypatch)
    real = outlier_shards.score_blocks

    def drops_a_block(numbers, search, nprobe):
        return real(numbers, search, nprobe)[1:]

    monkeypatch.setattr(outlier_shards, "score_blocks", drops_a_block)
    run = write_run(tmp_path / "run", clustered(3000, seed=3))
    with pytest.raises(Exception, match=r"blocks of lists holding .* were planned, each once"):
        score_run(run, config=dask_config(threads_cluster.scheduler_address), k=5, nlist=8, nprobe=3)
    assert not scores_path(run).exists()


@pytest.mark.slow
def test_automatic_settings_at_60000_objects_give_every_score_of_one_process(tmp_path):
    """The case where 156 of 60,000 scores differed (benchmarks/outliers_dask.py --objects 60000):
    automatic nlist/nprobe, worker processes of one thread, the scorer on every core."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[2] / "benchmarks"))
    from outliers_dask import make_vectors

    vectors = make_vectors(60_000, "lists")
    alone, spread, made_alone, made_spread = score_both(tmp_path, vectors, "local", k=10)
    assert made_alone["search"] == "partitioned"
    assert_same_bits(alone, spread)
    assert made_alone == made_spread
