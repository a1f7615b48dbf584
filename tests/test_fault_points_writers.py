"""Fault points in the writers tests/test_fault_points.py leaves out: save_to_database for each vector-index
backend, torchrun infer (one rank killed), engine (the ONNX export through infer's loop) and rank.

As there, every case makes the real process kill itself (SIGKILL) at a named point after a write
(``HYRAX_FAULT=<point>:<n>``, see :mod:`hyrax.faults`), reads from disk where the kill landed, runs the
writer again (``--resume`` where the verb has one) and compares with an uninterrupted run. Each case
records its landing with :func:`tests.fault_table.record_landing` (``HYRAX_FAULT_TABLE=<file>``).

The default suite runs one quick case (the per-rank arming of a fault point);
``python -m pytest tests/test_fault_points_writers.py -m slow`` runs the rest (three arrivals or three
seeds per writer and point).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hyrax.faults import _parse
from hyrax.results.run_dir import find_latest_run
from hyrax.results.store import ResultDataset
from tests.conftest import run_hyrax, torchrun_command
from tests.fault_table import record_landing
from tests.test_fault_points import (
    CONFIG,
    DATA,
    IDS,
    N,
    _expected_infer_state,
    _killed_at,
    _only_run,
    _table_state,
    _table_state_at,
    setup,  # noqa: F401 - the module fixture, shared
)

EQUAL = "complete, equal to uninterrupted"


def _config(base: Path, weights: Path, name: str, extra: str = "", seed: int = 1, objects: int = N) -> Path:
    """The fault-points config (200 vectors unless ``objects``) in its own results folder, plus EXTRA."""
    module = "faultvectors" if objects == N else f"faultvectors{objects}"
    if objects != N and not (base / f"{module}.py").exists():
        (base / f"{module}.py").write_text(DATA.replace("return 200", f"return {objects}"))
    text = CONFIG.format(results=base / name / "results", weights=weights, model="HyraxLoopback", seed=seed)
    path = base / f"{name}.toml"
    path.write_text(text.replace("faultvectors.Vectors", f"{module}.Vectors") + extra)
    return path


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# -- the mechanism: one rank armed (the default suite's case) ----------------------------------------


def test_fault_rank_arms_only_the_named_rank():
    """HYRAX_FAULT_RANK=1: the process whose RANK is 1 dies at the point, rank 0 passes it."""
    code = "from hyrax.faults import fault_point\nfault_point('here')\nprint('alive', flush=True)\n"
    outcomes = {}
    for rank in ("0", "1"):
        env = {**os.environ, "HYRAX_FAULT": "here", "HYRAX_FAULT_RANK": "1", "RANK": rank}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        outcomes[rank] = (done.returncode, done.stdout)
    assert outcomes == {"0": (0, "alive\n"), "1": (-signal.SIGKILL, "")}, outcomes


# -- save_to_database: chromadb and qdrant (batches of vectors inserted, then marked complete) ----------

INSPECT = """
import json, sys
import numpy as np
from hyrax.config import ConfigManager
from hyrax.vector_db.connection import DatabaseConnection, open_index, results_run
config = ConfigManager(sys.argv[1]).config
run = results_run(config)
index = open_index(config, run)
state = {"count": index.count(), "complete": index.is_complete, "objects": index._marker().get("objects")}
if index.backend == "chromadb":
    ids = index.collection.get(include=[])["ids"] if state["count"] else []
elif index.backend == "qdrant":
    ids, offset = [], None
    while index._exists():
        points, offset = index.client.scroll("hyrax_results", limit=1000, offset=offset, with_payload=True)
        ids += [p.payload["object_id"] for p in points]
        if offset is None:
            break
else:
    from hyrax.vector_db.lance_index import _has_vector_index
    ids = index._results().ids().tolist()
    state["indexed"] = _has_vector_index(index._dataset())
    state["index_files"] = len(list((index.path / "_indices").glob("*"))) if (index.path / "_indices").is_dir() else 0
state["ids"] = ids
try:
    connection = DatabaseConnection(config)
    queries = [f"v{i:04d}" for i in range(0, len(ids), 9)]
    found = [connection.search_by_id(q, 10) for q in queries]
    state["neighbours"] = [np.asarray(f[q]).tolist() for f, q in zip(found, queries)]
    state["distances"] = [np.asarray(f.distances[q]).tolist() for f, q in zip(found, queries)]
except Exception as error:
    state["refused"] = f"{type(error).__name__}: {error}"
print(json.dumps(state))
"""


def _inspect(env: dict, config: Path) -> dict:
    """The index as a fresh process reads it (local Qdrant lets one process at a time open it)."""
    done = _ok(
        subprocess.run(
            [sys.executable, "-c", INSPECT, str(config)], env=env, capture_output=True, text=True, timeout=300
        )
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


SAVE_IN_BATCHES = """
import sys
from hyrax.config import ConfigManager
from hyrax.vector_db.connection import save_to_database
save_to_database(ConfigManager(sys.argv[1]).config, batch_size=int(sys.argv[2]))
"""

_INDEX_REFERENCES: dict[tuple, dict] = {}


def _index_reference(setup, backend: str, objects: int = N, extra: str = "") -> dict:  # noqa: F811
    """What an uninterrupted infer + save_to_database gives (made once per backend and size)."""
    key = (backend, objects, extra)
    if key not in _INDEX_REFERENCES:
        base, env, weights, _ = setup
        config = _config(
            base, weights, f"index-reference-{backend}-{objects}", _backend(backend) + extra, objects=objects
        )
        _ok(run_hyrax("infer", "-c", config, env=env, timeout=300))
        _ok(run_hyrax("save_to_database", "-c", config, env=env, timeout=300))
        _INDEX_REFERENCES[key] = _inspect(env, config)
    return _INDEX_REFERENCES[key]


def _backend(name: str) -> str:
    return f'\n[vector_db]\nname = "{name}"\n'


def _check_index_whole_and_equal(state: dict, reference: dict, ids: list[str]) -> None:
    assert state["complete"] and "refused" not in state, state.get("refused")
    assert state["count"] == len(ids) and sorted(state["ids"]) == ids  # every id once
    assert state["neighbours"] == reference["neighbours"]
    np.testing.assert_allclose(state["distances"], reference["distances"], atol=1e-4)


BATCH_POINTS = [  # (backend, arrival, batch size): batches of 64 of 200 vectors; 0: the CLI's one batch
    *((backend, arrival, 64) for backend in ("chromadb", "qdrant") for arrival in (1, 2, 3)),
    *((backend, 1, 0) for backend in ("chromadb", "qdrant")),
]


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "arrival", "batch"), BATCH_POINTS)
def test_save_to_database_killed_after_a_batch_then_run_again(setup, backend, arrival, batch):  # noqa: F811
    """Killed after the n-th batch: n batches in, the index unfinished and refused for search; run again,
    it is whole, every id once, and searches as an uninterrupted build does. ``batch`` 0: the command line
    (one batch of all 200: every vector in, not yet marked complete)."""
    base, env, weights, _ = setup
    reference = _index_reference(setup, backend)
    name = f"index-{backend}-{arrival}-{batch}"
    config = _config(base, weights, name, _backend(backend))
    _ok(run_hyrax("infer", "-c", config, env=env, timeout=300))
    point = f"vector_db.batch_inserted:{arrival}"
    if batch:
        done = subprocess.run(
            [sys.executable, "-c", SAVE_IN_BATCHES, str(config), str(batch)],
            env={**env, "HYRAX_FAULT": point},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    else:
        _killed_at(env, point, "save_to_database", "-c", config)
    killed = _inspect(env, config)
    landed = {key: killed[key] for key in ("count", "complete", "objects")}
    written = min(N, (batch or N) * arrival)
    assert landed == {"count": written, "complete": False, "objects": N}, landed
    assert written > 0, "struck before the first write"
    assert "unfinished" in killed["refused"] and "Run save_to_database again" in killed["refused"]
    _ok(run_hyrax("save_to_database", "-c", config, env=env, timeout=300))
    _check_index_whole_and_equal(_inspect(env, config), reference, IDS)
    where = point if batch else f"{point} (its only batch: before complete)"
    record_landing(f"save_to_database ({backend})", where, {**landed, "batch": batch or N}, EQUAL)


# -- save_to_database: lance (the results table indexed in place; IVF-PQ past index_threshold) ---------

LANCE = "\n[vector_db.lance]\nindex_threshold = 100\n"


@pytest.mark.slow
@pytest.mark.parametrize("objects", [300, 400, 500])
def test_lance_index_build_killed_before_its_commit_then_run_again(setup, objects):  # noqa: F811
    """Killed with its IVF-PQ segment written, not committed: the table is searched exactly, nothing
    half-made is read; run again, the index is built and searches as an uninterrupted build does."""
    base, env, weights, _ = setup
    reference = _index_reference(setup, "lance", objects, LANCE)
    assert reference["indexed"]
    config = _config(base, weights, f"index-lance-{objects}", _backend("lance") + LANCE, objects=objects)
    _ok(run_hyrax("infer", "-c", config, env=env, timeout=300))
    point = "vector_db.index_segment_written:1"
    _killed_at(env, point, "save_to_database", "-c", config)
    killed = _inspect(env, config)
    landed = {key: killed[key] for key in ("count", "indexed", "index_files")}
    assert landed == {"count": objects, "indexed": False, "index_files": 1}, landed  # struck after a write
    assert "refused" not in killed  # searchable (exactly) meanwhile
    _ok(run_hyrax("save_to_database", "-c", config, env=env, timeout=300))
    again = _inspect(env, config)
    assert again["indexed"]
    _check_index_whole_and_equal(again, reference, [f"v{i:04d}" for i in range(objects)])
    record_landing("save_to_database (lance)", point, {**landed, "objects": objects}, EQUAL)


# -- engine: the ONNX export through infer's loop, resumed with engine --resume -----------------------


@pytest.fixture(scope="module")
def onnx_export(setup):  # noqa: F811
    """(an exported to_onnx run, the uninterrupted engine run's ids and values)."""
    base, env, weights, _ = setup
    config = _config(base, weights, "engine-reference")
    _ok(run_hyrax("to_onnx", "-i", weights, "-c", config, env=env, timeout=300))  # the loopback
    export = find_latest_run(base / "engine-reference" / "results", "to_onnx")
    _ok(run_hyrax("engine", "-i", export, "-c", config, env=env, timeout=300))
    results = ResultDataset(data_location=find_latest_run(base / "engine-reference" / "results", "engine"))
    return export, results.ids().tolist(), results[np.arange(len(results))]


ENGINE_POINTS = [
    *(f"results.fragment_written:{n}" for n in (1, 2, 7)),
    *(f"results.committed:{n}" for n in (1, 4, 12)),
    "run.before_complete",
]


@pytest.mark.slow
@pytest.mark.parametrize("point", ENGINE_POINTS)
def test_engine_killed_at_each_point_resumes_complete(setup, onnx_export, point):  # noqa: F811
    base, env, weights, reference = setup
    export, reference_ids, reference_values = onnx_export
    name = f"engine-{point.replace(':', '-')}"
    config = _config(base, weights, name)
    results = base / name / "results"
    _killed_at(env, point, "engine", "-i", export, "-c", config)
    run = _only_run(results, "engine")
    landed = _table_state(run)
    expected = _expected_infer_state(point)
    assert {key: landed[key] for key in expected} == expected, landed
    assert landed["rows"] or landed["uncommitted_files"], "struck before the first write"
    with pytest.raises(Exception, match="not a complete one"):
        ResultDataset(data_location=run)
    _ok(run_hyrax("engine", "--resume", run, env=env, timeout=300))
    assert find_latest_run(results, "engine") == run
    resumed = ResultDataset(data_location=run)
    assert resumed.ids().tolist() == reference_ids == IDS  # every id once, in order
    np.testing.assert_array_equal(resumed[np.arange(N)], reference_values)
    np.testing.assert_allclose(reference_values.reshape(N, -1), reference, atol=1e-6)  # the loopback's inputs
    record_landing("engine", point, landed, EQUAL)


# -- torchrun infer: one rank killed, resumed by torchrun ---------------------------------------------

DISTRIBUTED_POINTS = [  # each rank's share: 100 objects, 7 chunks (commit_seconds = 0)
    *(f"results.fragment_written:{n}" for n in (1, 2, 5)),
    *(f"results.committed:{n}" for n in (1, 3, 6)),
]


def _torchrun(env: dict, cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        torchrun_command(*args),
        env={**env, "OMP_NUM_THREADS": "1"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("point", DISTRIBUTED_POINTS)
def test_torchrun_infer_with_a_rank_killed_resumes_to_the_one_process_result(setup, point):  # noqa: F811
    """HYRAX_FAULT_RANK=1: rank 1 dies at its n-th chunk (written, or listed in its manifest); torchrun
    stops rank 0; nothing is published. torchrun --resume completes it: every id once, in order, the
    values a one-process infer gives."""
    import lance

    from hyrax.training.distributed_inference import parts_path

    base, env, weights, reference = setup
    name = f"ddp-{point.replace(':', '-')}"
    config = _config(base, weights, name)
    killed = _torchrun({**env, "HYRAX_FAULT": point, "HYRAX_FAULT_RANK": "1"}, base, "infer", "-c", config)
    assert killed.returncode != 0, killed.stderr[-3000:]
    # torchrun names the rank that failed first: rank 1, by its own SIGKILL.
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s*\n\s*exitcode\s*: -9", killed.stderr), killed.stderr[
        -3000:
    ]
    run = _only_run(base / name / "results", "infer")
    manifest = (
        json.loads((parts_path(run) / "rank-1.json").read_text())
        if (parts_path(run) / "rank-1.json").is_file()
        else {"rows": 0, "fragments": [], "done": False}
    )
    table = run / "lance_db" / "results.lance"
    files = len(list((table / "data").glob("*.lance"))) if (table / "data").is_dir() else 0
    listed = sum(len(json.loads(m.read_text())["fragments"]) for m in parts_path(run).glob("rank-*.json"))
    landed = {
        "rank1_rows": manifest["rows"],
        "rank1_done": manifest["done"],
        "published_rows": _published_rows(table),
        "unlisted_files": files - listed,
    }
    point_name, arrival, _ = _parse(point)
    committed = 16 * (arrival - 1 if point_name == "results.fragment_written" else arrival)
    assert landed["rank1_rows"] == committed and not landed["rank1_done"], landed
    assert landed["published_rows"] == 0, landed  # nothing published: no reader takes it for results
    if point_name == "results.fragment_written":
        assert landed["unlisted_files"] >= 1, landed  # the killed chunk's file, an orphan
    assert landed["rank1_rows"] or landed["unlisted_files"], "struck before the first write"
    resumed = _torchrun(env, base, "infer", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = ResultDataset(data_location=run)
    assert results.ids().tolist() == IDS  # every id once, in order
    np.testing.assert_array_equal(results[np.arange(N)], reference)  # what one process writes
    final = {d.path for f in lance.dataset(str(table)).get_fragments() for d in f.data_files()}
    assert {p.name for p in (table / "data").iterdir()} == final  # the orphans removed
    record_landing("torchrun infer (rank 1 killed)", point, landed, EQUAL)


def _published_rows(table: Path) -> int:
    import lance

    return lance.dataset(str(table)).count_rows() if _table_state_at(table) else 0


# -- rank: the ranking table, replaced whole ----------------------------------------------------------

RANK_LABELS = ["v0003", "v0050", "v0120", "v0177"]
_RANKINGS: dict[int, tuple[Path, dict]] = {}


def _reference_ranking(setup, seed: int) -> tuple[Path, dict]:  # noqa: F811
    """(a folder with an infer run, its labels and outlier scores, unranked; the ranking an uninterrupted
    rank makes from them), once per seed: the cases copy the folder and rank the copy."""
    if seed not in _RANKINGS:
        import shutil

        base, env, weights, _ = setup
        name = f"rank-prepared-{seed}"
        config = _config(base, weights, name, seed=seed)
        _ok(run_hyrax("infer", "-c", config, env=env, timeout=300))
        _ok(run_hyrax("label", *RANK_LABELS, "-c", config, env=env, timeout=300))
        _ok(run_hyrax("outliers", "-c", config, env=env, timeout=300))  # rank's own writes follow
        prepared = base / f"{name}-unranked"
        shutil.copytree(base / name, prepared)
        _ok(run_hyrax("rank", "-c", config, env=env, timeout=300))
        _RANKINGS[seed] = prepared, _ranking(find_latest_run(base / name / "results", "infer"))
    return _RANKINGS[seed]


def _ranking(run: Path) -> dict:
    import lance

    from hyrax.discovery.rank import ranking_path

    return lance.dataset(str(ranking_path(run))).to_table().to_pydict()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("point", ["derived_table.written:1", "derived_table.committed:1"])
def test_rank_killed_at_each_point_then_run_again(setup, point, seed):  # noqa: F811
    """Killed with the ranking's files written, not committed: no ranking (not some); killed after the
    commit: the whole ranking. Run again: the ranking an uninterrupted rank makes."""
    import shutil

    from hyrax.discovery.rank import ranking_path

    base, env, weights, _ = setup
    prepared, reference = _reference_ranking(setup, seed)
    name = f"rank-{point.replace(':', '-')}-{seed}"
    shutil.copytree(prepared, base / name)
    config = _config(base, weights, name, seed=seed)
    run = find_latest_run(base / name / "results", "infer")
    _killed_at(env, point, "rank", "-c", config)
    path = ranking_path(run)
    files = len(list((path / "data").glob("*.lance"))) if (path / "data").is_dir() else 0
    landed = {"data_files": files, "version": _table_state_at(path)}
    assert files, "struck before the first write"
    if point.startswith("derived_table.written"):
        assert landed["version"] == 0, landed
    else:
        assert landed["version"] == 1, landed
        assert _ranking(run) == reference  # committed whole
    done = _ok(run_hyrax("rank", "-c", config, env=env, timeout=300))
    assert _ranking(run) == reference
    assert "v0" in done.stdout
    record_landing("rank", point, {**landed, "seed": seed}, EQUAL)
