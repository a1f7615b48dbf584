"""Outlier scores (src/hyrax/vector_db/outliers.py): exact and partitioned k-th-neighbour distances,
reuse and recomputation, the scoring lock, rankings and reads, on small real tables (faiss, Lance)."""

from __future__ import annotations

import doctest
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import lance
import numpy as np
import pytest

from hyrax.errors import DataError, HyraxError
from hyrax.results.store import ResultWriter
from hyrax.vector_db import kth_neighbour, outliers
from hyrax.vector_db.outliers import (
    ranked,
    read_scores,
    score_range,
    score_run,
    scores_metadata,
    scores_path,
)


def write_run(run, vectors, ids=None):
    """An infer run holding ``vectors`` (ids obj0, obj1, ... unless given)."""
    ids = np.char.add("obj", np.arange(len(vectors)).astype(str)) if ids is None else ids
    with ResultWriter(run, shape=vectors.shape[1:]) as writer:
        writer.write(ids, vectors)
    return run


def clustered(count, dimension=16, clusters=20, subspace=6, seed=0):
    """Latent-like vectors: clusters on a low-dimensional subspace, plus a little noise everywhere."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((subspace, dimension)) / np.sqrt(subspace)
    centres = rng.standard_normal((clusters, subspace)) * 4
    low = centres[rng.integers(clusters, size=count)] + 0.7 * rng.standard_normal((count, subspace))
    return (low @ basis + 0.05 * rng.standard_normal((count, dimension))).astype(np.float32)


def exact_kth(vectors, k):
    """Distance to the k-th nearest other object, by brute force over every pair."""
    import faiss

    distances, _ = faiss.knn(vectors, vectors, k + 1)
    return np.sqrt(np.maximum(distances[:, k], 0))


def test_docstring_example_runs():
    assert doctest.testmod(outliers, optionflags=doctest.ELLIPSIS).failed == 0


def test_ranked_top_equals_a_full_stable_sort_with_ties(tmp_path, monkeypatch):
    # A 40 x 60 integer grid: every inner point's 4th neighbour is at exactly 1, so scores tie in bulk.
    grid = np.stack(np.meshgrid(np.arange(40), np.arange(60), indexing="ij"), axis=-1).reshape(-1, 2)
    run = write_run(tmp_path / "run", grid.astype(np.float32))
    assert score_run(run, k=4) == len(grid)
    scores = read_scores(run, np.arange(len(grid)))
    assert np.array_equal(scores, exact_kth(grid.astype(np.float32), 4).astype(np.float32))
    expected = np.argsort(-scores, kind="stable")
    monkeypatch.setattr(outliers, "READ_ROWS", 100)  # many batches: candidates carried across them
    for top in (1, 7, 100, 333, len(grid), len(grid) + 5, None):
        frame = ranked(run, top)
        want = expected[:top] if top else expected
        assert list(frame.columns) == ["rank", "object_id", "outlier_score", "row"]
        assert frame["row"].tolist() == want.tolist(), top
        assert frame["object_id"].tolist() == [f"obj{row}" for row in want]
        assert frame["outlier_score"].tolist() == scores[want].tolist()
        assert frame["rank"].tolist() == list(range(1, len(want) + 1))
    assert len(set(scores[expected[90:110]])) == 1  # the cut at 100 falls inside a tie


def test_partitioned_search_equals_exact_when_every_list_is_searched(tmp_path):
    vectors = clustered(3000)
    run = write_run(tmp_path / "run", vectors)
    score_run(run, k=5, nlist=24, nprobe=24)
    assert scores_metadata(run)["search"] == "partitioned" and scores_metadata(run)["nprobe"] == "24"
    scores = read_scores(run, np.arange(len(vectors)))
    np.testing.assert_allclose(scores, exact_kth(vectors, 5), rtol=1e-4, atol=1e-4)


def test_lists_too_small_for_k_neighbours_fall_back_to_a_full_search(tmp_path):
    vectors = clustered(200, seed=3)
    run = write_run(tmp_path / "run", vectors)
    score_run(run, k=10, nlist=50, nprobe=1)  # about 4 objects a list: one list cannot hold 10 neighbours
    np.testing.assert_allclose(read_scores(run, np.arange(200)), exact_kth(vectors, 10), rtol=1e-4, atol=1e-4)


def test_partitioned_recall_with_automatic_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(kth_neighbour, "EXACT_LIMIT", 0)  # the path of large tables, at a size that is quick
    vectors = clustered(20_000, clusters=5, subspace=10, seed=1)
    run = write_run(tmp_path / "run", vectors)
    exact = exact_kth(vectors, 10)

    def recall():
        scores = read_scores(run, np.arange(len(vectors)))
        assert np.all(scores >= exact * (1 - 1e-4))  # a missed neighbour only ever makes a score larger
        return np.mean(np.abs(scores - exact) <= 0.01 * exact)

    score_run(run, nprobe=2)  # too few lists for this data: the automatic choice must do better
    assert recall() < 0.9
    score_run(run)
    metadata = scores_metadata(run)
    assert metadata["search"] == "partitioned" and metadata["nlist"] == "20" and metadata["nprobe"] != "2"
    assert recall() >= 0.9, metadata
    assert float(metadata["estimated_recall"]) >= kth_neighbour.TARGET_RECALL
    assert abs(float(metadata["estimated_recall"]) - recall()) < 0.03


def test_the_highest_scores_are_searched_again_in_more_lists(tmp_path, monkeypatch):
    # A missed neighbour only raises a score, so the objects a miss raised crowd the top of the ranking (on
    # 10M real latents at nprobe 5, 32% of the exact top 1% was in the top 1%). The objects scored highest
    # are searched again in more lists: here in every list, so their scores must come out exact.
    monkeypatch.setattr(kth_neighbour, "EXACT_LIMIT", 0)
    monkeypatch.setattr(kth_neighbour, "OBJECTS_PER_LIST", 100)  # 200 lists
    vectors = clustered(20_000, clusters=5, subspace=10, seed=1)
    exact = exact_kth(vectors, 10)

    def scored(name):
        run = write_run(tmp_path / name, vectors)
        score_run(run, k=10)
        return read_scores(run, np.arange(len(vectors))), scores_metadata(run)

    refined, metadata = scored("refined")  # the defaults: the top 1,000 (5%, at least 1,000) in 4x the lists,
    nprobe = int(metadata["nprobe"])  # then the top 200 of those scores (1%, at least 200) in 16x
    assert (
        metadata["refined"]
        == f"1000 objects at nprobe {4 * nprobe}, then 200 objects at nprobe {16 * nprobe}"
    )
    assert outliers._describe(metadata).endswith(f", then the top {metadata['refined']}")
    monkeypatch.setattr(kth_neighbour, "REFINE_STEPS", ())
    plain, plain_metadata = scored("plain")
    assert "refined" not in plain_metadata and plain_metadata["nprobe"] == metadata["nprobe"]
    assert np.all(refined <= plain) and np.all(refined >= exact * (1 - 1e-4))
    highest = np.argsort(-plain, kind="stable")[:1000]
    assert np.mean(plain[highest] > exact[highest] * 1.01) > 0.01  # the first search left some raised

    monkeypatch.setattr(kth_neighbour, "REFINE_STEPS", ((0.05, 1000, 10**6),))  # every list
    everywhere, metadata = scored("everywhere")
    assert metadata["refined"] == "1000 objects at nprobe 200"
    np.testing.assert_allclose(everywhere[highest], exact[highest], rtol=1e-4, atol=1e-4)
    rest = np.setdiff1d(np.arange(len(vectors)), highest)
    np.testing.assert_array_equal(everywhere[rest], plain[rest])  # nothing else touched

    # the second step searches again the top as the first step left it, and only those
    entering: dict[int, np.ndarray] = {}  # the scores as each step found them, by its nprobe
    searched: dict[int, list] = {}  # the objects each step searched
    refine_top, search_block = (
        kth_neighbour.PartitionedSearch._refine_top,
        kth_neighbour.PartitionedSearch._search_block,
    )

    def step(self, scores, top, wider):
        entering[wider] = scores.copy()
        return refine_top(self, scores, top, wider)

    def block(self, lists, first, rows, nprobe, wanted=None):
        at, best = search_block(self, lists, first, rows, nprobe, wanted)
        if wanted is not None:
            searched.setdefault(nprobe, []).append(self.rows[first + at])
        return at, best

    monkeypatch.setattr(kth_neighbour.PartitionedSearch, "_refine_top", step)
    monkeypatch.setattr(kth_neighbour.PartitionedSearch, "_search_block", block)
    monkeypatch.setattr(kth_neighbour, "REFINE_STEPS", ((0.05, 1000, 4), (0.01, 200, 10**6)))
    second, metadata = scored("second")
    assert metadata["refined"] == f"1000 objects at nprobe {4 * nprobe}, then 200 objects at nprobe 200"
    after_first = entering[200]
    assert not np.array_equal(after_first, entering[4 * nprobe])  # the first step lowered some scores
    top = np.argsort(-after_first, kind="stable")[:200]
    np.testing.assert_array_equal(np.sort(np.concatenate(searched[200])), np.sort(top))
    np.testing.assert_allclose(second[top], exact[top], rtol=1e-4, atol=1e-4)
    rest = np.setdiff1d(np.arange(len(vectors)), top)
    np.testing.assert_array_equal(second[rest], after_first[rest])


def test_high_intrinsic_dimension_is_searched_in_a_graph_to_the_same_recall(tmp_path, monkeypatch):
    # Isotropic 64-d clusters: a k-means partition cuts every neighbourhood, so the lists would need most of
    # the table; the scorer must see that on its sample and search a graph instead, to the same target.
    monkeypatch.setattr(kth_neighbour, "EXACT_LIMIT", 0)
    monkeypatch.setattr(kth_neighbour, "OBJECTS_PER_LIST", 50)  # 200 lists: the 200,000-object shape, small
    monkeypatch.setattr(kth_neighbour, "BATCH_BYTES", 1)  # read in batches of 1,024, as 65,536 at scale
    rng = np.random.default_rng(5)
    centres = 3 * rng.standard_normal((2, 64))
    vectors = (centres[rng.integers(2, size=10_000)] + rng.standard_normal((10_000, 64))).astype(np.float32)
    run = write_run(tmp_path / "run", vectors)
    score_run(run, k=10)
    metadata = scores_metadata(run)
    assert metadata["search"] == "graph", metadata
    scores, exact = read_scores(run, np.arange(len(vectors))), exact_kth(vectors, 10)
    assert np.all(scores >= exact * (1 - 1e-4))
    recall = np.mean(np.abs(scores - exact) <= 0.01 * exact)
    assert recall >= 0.9 and float(metadata["estimated_recall"]) >= kth_neighbour.TARGET_RECALL, metadata
    assert abs(float(metadata["estimated_recall"]) - recall) < 0.03
    assert outliers._describe(metadata).startswith("knn, k=10, graph (HNSW, 32 links), effort ")


def test_a_time_budget_trades_recall_for_time_and_says_so(tmp_path, monkeypatch, caplog):
    # The graph's shape of data (isotropic 64-d clusters), with a budget no search fits: the scorer must
    # keep the lists at the fewest probes, say the recall they reach, and record it with the scores; a
    # budget every search fits changes nothing.
    monkeypatch.setattr(kth_neighbour, "EXACT_LIMIT", 0)
    monkeypatch.setattr(kth_neighbour, "OBJECTS_PER_LIST", 50)
    monkeypatch.setattr(kth_neighbour, "GRAPH_PILOT", 2_000)
    rng = np.random.default_rng(5)
    centres = 3 * rng.standard_normal((2, 64))
    vectors = (centres[rng.integers(2, size=6_000)] + rng.standard_normal((6_000, 64))).astype(np.float32)
    run = write_run(tmp_path / "run", vectors)
    exact = exact_kth(vectors, 10)
    with caplog.at_level("WARNING", logger="hyrax.vector_db.kth_neighbour"):
        score_run(run, k=10, time_budget=1e-6)
    metadata = scores_metadata(run)
    assert metadata["search"] == "partitioned" and metadata["nprobe"] == str(min(kth_neighbour.PROBES)), (
        metadata
    )
    assert metadata["time_budget_s"] == "1e-06" and float(metadata["predicted_s"]) > 1e-6
    recall = np.mean(np.abs(read_scores(run, np.arange(len(vectors))) - exact) <= 0.01 * exact)
    assert recall < 0.9 and abs(float(metadata["estimated_recall"]) - recall) < 0.05, (recall, metadata)
    assert "over outliers.time_budget_minutes" in caplog.text and "score" in caplog.text
    score_run(run, k=10, time_budget=3600.0)  # another budget: scored again, and now by the graph
    assert scores_metadata(run)["search"] == "graph"
    assert float(scores_metadata(run)["estimated_recall"]) >= kth_neighbour.TARGET_RECALL


def test_time_budget_setting_is_checked():
    from hyrax.errors import ConfigError
    from hyrax.verbs.vector_db_verbs import _budget_seconds

    assert _budget_seconds(False) is None and _budget_seconds(30) == 1800.0
    for bad in (0, -1, "30", True):
        with pytest.raises(ConfigError, match="outliers.time_budget_minutes must be a number of minutes > 0"):
            _budget_seconds(bad)


def test_same_settings_reuse_other_settings_or_results_recompute(tmp_path):
    vectors = clustered(500)
    run = write_run(tmp_path / "run", vectors)

    def version():
        return lance.dataset(str(scores_path(run))).version

    assert score_run(run, k=5) == 500
    first = version()
    assert score_run(run, k=5) == 0 and version() == first  # nothing recomputed, nothing written
    before = read_scores(run, np.arange(500))
    assert score_run(run, k=3) == 500 and version() == first + 1
    assert np.all(read_scores(run, np.arange(500)) <= before)  # the 3rd neighbour is nearer than the 5th
    assert score_run(run, k=3, method="isolation_forest") == 500
    assert scores_metadata(run)["method"] == "isolation_forest"
    assert score_run(run, k=7, method="isolation_forest") == 0  # k means nothing to a forest
    assert score_run(run, k=3, nprobe=4) == 500 and scores_metadata(run)["search"] == "partitioned"
    with ResultWriter(run, shape=(16,), resume=True) as writer:  # the results change: all rescored
        writer.write(np.array(["late"]), clustered(1, seed=9))
    assert score_run(run, k=3, nprobe=4) == 501 and len(ranked(run)) == 501
    assert scores_metadata(run)["results_rows"] == "501"


def test_scores_of_results_that_changed_are_never_read_as_current(tmp_path):
    """Issue 15: scores record the results version they came from; when the results move on, the ranking
    refuses them (saying to score again) and the map stops showing them, until they are recomputed."""
    from hyrax.errors import ResultsError
    from hyrax.vector_db.outliers import stale_scores

    run = write_run(tmp_path / "run", clustered(300))
    score_run(run, k=3)
    assert stale_scores(run) is None
    with ResultWriter(run, shape=(16,), resume=True) as writer:
        writer.write(np.array(["late"]), clustered(1, seed=9))
    assert "results_rows 300 -> 301" in stale_scores(run)
    with pytest.raises(ResultsError, match="computed from another version of its results.*hyrax outliers"):
        ranked(run, top=5)
    assert score_run(run, k=3) == 301 and stale_scores(run) is None and len(ranked(run)) == 301


def test_a_second_scorer_is_refused_or_waits(tmp_path):
    run = write_run(tmp_path / "run", clustered(300))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import time
                from hyrax.vector_db.outliers import scoring_lock
                with scoring_lock({str(run)!r}):
                    print("locked", flush=True)
                    time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with ThreadPoolExecutor(1) as pool:
        try:
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(HyraxError, match=rf"pid {holder.pid} .* is computing the outlier scores"):
                score_run(run, wait=False)
            waiting = pool.submit(score_run, run)
            with pytest.raises(FutureTimeout):
                waiting.result(timeout=2)  # it waits for the holder...
            assert not scores_path(run).exists()
        finally:
            holder.kill()  # ...whose lock goes with it, however it ends
            holder.wait()
        assert waiting.result(timeout=60) == 300
    assert not np.isnan(read_scores(run, np.arange(300))).any()


@pytest.mark.parametrize(
    "settings",
    [{}, {"nlist": 4, "nprobe": 2}, {"method": "isolation_forest"}],
    ids=["exact", "partitioned", "forest"],
)
def test_a_nan_vector_is_an_error_naming_the_object(tmp_path, settings):
    vectors = clustered(400)
    vectors[123, 5] = np.nan
    run = write_run(tmp_path / "run", vectors)
    with pytest.raises(DataError, match=r"Object obj123 \(row 123 of .*\) has a NaN or infinite value"):
        score_run(run, **settings)
    assert not scores_path(run).exists()


def test_bad_settings_name_the_key(tmp_path):
    run = write_run(tmp_path / "run", clustered(50))
    with pytest.raises(ValueError, match="outliers.nprobe must be a whole number >= 1 or false"):
        score_run(run, nprobe=0)
    with pytest.raises(ValueError, match="outliers.method must be one of knn, isolation_forest"):
        score_run(run, method="lof")


def test_read_scores_and_score_range(tmp_path):
    vectors = clustered(200)
    run = write_run(tmp_path / "run", vectors)
    assert np.isnan(read_scores(run, [0, 1])).all() and score_range(run) is None
    score_run(run, k=2)
    everything = read_scores(run, np.arange(200))
    got = read_scores(run, [5, -1, 200, 0, 5])
    assert got.dtype == np.float32 and np.isnan(got[[1, 2]]).all()
    assert got[[0, 3, 4]].tolist() == everything[[5, 0, 5]].tolist()
    assert score_range(run) == (float(everything.min()), float(everything.max()))
    with pytest.raises(HyraxError, match="No outlier scores"):
        ranked(tmp_path / "elsewhere", 3)
