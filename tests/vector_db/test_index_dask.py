"""The Lance vector index built on Dask workers (src/hyrax/vector_db/lance_index.py, ``[dask]``): the
IVF centroids and PQ codebook trained once here, each segment of fragments built by a worker with that
one model, the segments committed and merged here: the same index as one process builds (rows indexed,
the same neighbours and distances for every query).

``-m slow`` (a cluster's start is ~4 s here): an in-process cluster of 2 workers, worker processes and
the published call, a worker process killed in its segment
(``python -m pytest tests/vector_db/test_index_dask.py -m slow``). Default: the segment plan's check."""

from __future__ import annotations

import lance
import numpy as np
import pytest

from hyrax.vector_db import lance_index
from hyrax.vector_db.base import VectorDBError
from hyrax.vector_db.lance_index import LanceIndex, _checked
from tests.vector_db.test_vector_db import clustered


@pytest.fixture(scope="module")
def threads_cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


def six_fragments(directory, ids, vectors):
    index = LanceIndex(directory, settings={"index_threshold": 1000})
    for start in range(0, 6000, 1000):
        index.insert(ids[start : start + 1000], vectors[start : start + 1000])
    return index


def described(index):
    (found,) = [i for i in lance.dataset(str(index.path)).describe_indices() if "data" in list(i.field_names)]
    return found


def assert_same_index(one, other, queries):
    assert one.count() == other.count()
    assert described(one).num_rows_indexed == described(other).num_rows_indexed == one.count()
    assert len(described(one).segments) == len(described(other).segments) == 1  # merged
    found_one, distances_one = one.search(queries, k=10)
    found_other, distances_other = other.search(queries, k=10)
    assert found_one.tolist() == found_other.tolist()
    assert np.array_equal(distances_one, distances_other)


def test_segments_that_do_not_cover_the_plan_are_refused():
    planned = [([0, 1], 2000), ([2], 1000)]
    assert _checked([("a", 2000, [0, 1]), ("b", 1000, [2])], planned, "t.lance") == ["a", "b"]
    with pytest.raises(VectorDBError, match=r"cover the fragments \[\[0, 1\]\]; 2 segments .* each once"):
        _checked([("a", 2000, [0, 1])], planned, "t.lance")


@pytest.mark.slow
def test_segments_built_by_two_workers_give_the_index_of_one_process(tmp_path, monkeypatch, threads_cluster):
    monkeypatch.setattr(lance_index, "SEGMENT_ROWS", 2000)
    ids, vectors = clustered(6100, 16)
    held_out, vectors, ids = vectors[6000:], vectors[:6000], ids[:6000]
    alone, spread = (
        six_fragments(tmp_path / "alone", ids, vectors),
        six_fragments(tmp_path / "spread", ids, vectors),
    )
    assert "3 segment(s)" in alone.build()
    assert "3 segment(s)" in spread.build(client=threads_cluster)
    assert_same_index(alone, spread, held_out)


@pytest.mark.slow
def test_the_published_call_builds_on_worker_processes(tmp_path):
    """As a 0.13 user writes it: h.config[...] set, then h.save_to_database(); [dask] "local"."""
    from hyrax import Hyrax
    from tests.vector_db.test_outliers import write_run

    ids, vectors = clustered(3000, 16)
    indexes = []
    for scheduler in ("none", "local"):
        run = write_run(tmp_path / f"run-{scheduler}", vectors, ids)
        h = Hyrax()
        h.config["vector_db"]["lance"]["index_threshold"] = 1000
        h.config["dask"]["scheduler"] = scheduler
        h.save_to_database(input_dir=str(run))
        indexes.append(LanceIndex(run / "vector_db", results_dir=run))
    assert_same_index(*indexes, vectors[:40] + 0.01)


@pytest.mark.slow
def test_a_worker_killed_in_its_segment_leaves_the_same_index(tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    monkeypatch.setattr(lance_index, "SEGMENT_ROWS", 2000)
    ids, vectors = clustered(6100, 16)
    held_out, vectors, ids = vectors[6000:], vectors[:6000], ids[:6000]
    alone, spread = (
        six_fragments(tmp_path / "alone", ids, vectors),
        six_fragments(tmp_path / "spread", ids, vectors),
    )
    alone.build()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        armed = sorted(client.scheduler_info()["workers"])[0]
        client.run(
            exec, "import hyrax.faults as f; f._TARGET, f._ARRIVAL = 'vector_db.index_segment_written', 1",
            workers=[armed],
        )  # fmt: skip
        # SEGMENT_ROWS reaches the build here (the plan is made in this process); workers build what it says
        spread.build(client=client)
        assert armed not in client.scheduler_info()["workers"], "the armed worker was never killed"
    assert_same_index(alone, spread, held_out)
