"""reduce_dimensions on Dask workers (src/hyrax/reduce/shards.py): the reducer fitted once here, rows
placed by the workers, the map written here in row order: the same map, bit for bit, as one process.

Default suite: the placement on one thread and on three (no cluster), the shard plan. ``-m slow``: PCA
through the published call on an in-process cluster of 2 workers reached by its address, UMAP on worker
processes ("local"), and a worker process killed in its shard
(``python -m pytest tests/reduce/test_reduce_dask.py -m slow``)."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax import Hyrax
from hyrax.reduce.base import SamplePlacement
from hyrax.reduce.shards import shard_rows
from tests.reduce.test_reduce import infer_run  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def threads_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        yield cluster


def reduce_with(tmp_path, infer_run, scheduler, name="pca", **settings):  # noqa: F811
    """The published call (``h.reduce_dimensions()`` after setting config keys) on ``scheduler``;
    (ids, coordinates of every row)."""
    run, _ = infer_run
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("general.threads", 3)  # this process on 3 threads; a worker's task on 1
    h.set_config("reduce_dimensions.name", name)
    h.set_config("reduce_dimensions.batch_size", 64)  # several shards of whole batches
    h.set_config("dask.scheduler", scheduler)
    for key, value in settings.items():
        h.set_config(key, value)
    reduced = h.reduce_dimensions(input_dir=str(run))
    return reduced.ids(), reduced[np.arange(len(reduced))]


def assert_same_bits(first, second):
    assert first.dtype == second.dtype == np.float32 and first.shape == second.shape
    differ = np.flatnonzero((first.view(np.uint32) != second.view(np.uint32)).any(axis=1))
    assert not len(differ), (
        f"{len(differ)} rows differ, first {differ[0]}: {first[differ[0]]} != {second[differ[0]]}"
    )


def test_placement_gives_the_same_bits_on_one_thread_and_on_three():
    """A Dask worker's task runs faiss on one thread, this process on several: each row's place must
    not depend on that (faiss's BLAS path, above 8,000 16-d queries a call, does)."""
    import faiss

    rng = np.random.default_rng(0)
    sample = rng.standard_normal((500, 16)).astype(np.float32)
    placement = SamplePlacement(sample, rng.standard_normal((500, 2)).astype(np.float32))
    vectors = (sample[rng.integers(500, size=20_000)] + 0.2 * rng.standard_normal((20_000, 16))).astype(
        np.float32
    )
    found = {}
    try:
        for count in (1, 3):
            faiss.omp_set_num_threads(count)
            found[count] = placement.place(vectors)
    finally:
        faiss.omp_set_num_threads(1)
    assert_same_bits(found[1], found[3])


def test_shards_are_runs_of_whole_batches_covering_every_row_once():
    for count, batch, workers in ((10, 2, 1), (600, 64, 2), (1, 64, 4), (5_000_000, 65_536, 2)):
        ranges = shard_rows(count, batch, workers)
        assert ranges[0][0] == 0 and ranges[-1][1] == count
        assert all(stop == start for (_, stop), (start, _) in zip(ranges[:-1], ranges[1:], strict=True))
        assert all(start % batch == 0 for start, _ in ranges)
        assert max(stop - start for start, stop in ranges) <= max(batch, 1_048_576)
    assert len(shard_rows(600, 64, 2)) == 5  # 10 batches, at most 4 shards a worker: 2 batches each


@pytest.mark.slow  # a cluster's start (~4 s here): the default suite's one cluster is the outliers'
def test_the_published_call_maps_on_dask_as_in_one_process(tmp_path, infer_run, threads_cluster):  # noqa: F811
    ids_alone, alone = reduce_with(tmp_path / "alone", infer_run, "none")
    ids_spread, spread = reduce_with(tmp_path / "spread", infer_run, threads_cluster.scheduler_address)
    assert ids_alone.tolist() == ids_spread.tolist()
    assert_same_bits(alone, spread)


@pytest.mark.slow
def test_umap_placed_by_worker_processes_is_the_map_of_one_process(tmp_path, infer_run):  # noqa: F811
    settings = {"reduce_dimensions.umap.fit_sample_size": 200, "dask.workers": 2}
    ids_alone, alone = reduce_with(tmp_path / "alone", infer_run, "none", "umap", **settings)
    ids_spread, spread = reduce_with(tmp_path / "spread", infer_run, "local", "umap", **settings)
    assert ids_alone.tolist() == ids_spread.tolist()
    assert_same_bits(alone, spread)


@pytest.mark.slow
def test_a_worker_killed_in_its_shard_leaves_the_map_exact_and_written_once(tmp_path, infer_run):  # noqa: F811
    import lance
    from distributed import Client, LocalCluster

    from hyrax.results.store import table_path

    ids_alone, alone = reduce_with(tmp_path / "alone", infer_run, "none")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        armed = sorted(client.scheduler_info()["workers"])[0]
        client.run(
            exec, "import hyrax.faults as f; f._TARGET, f._ARRIVAL = 'reduce.shard', 1", workers=[armed]
        )
        ids_spread, spread = reduce_with(tmp_path / "spread", infer_run, cluster.scheduler_address)
        assert armed not in client.scheduler_info()["workers"], "the armed worker was never killed"
    assert ids_alone.tolist() == ids_spread.tolist()
    assert_same_bits(alone, spread)
    versions = [
        len(lance.dataset(str(table_path(run))).versions())
        for run in [
            *(tmp_path / "alone" / "results").glob("*pca*"),
            *(tmp_path / "spread" / "results").glob("*pca*"),
        ]
    ]
    assert len(versions) == 2 and versions[0] == versions[1]  # written as one process writes it
