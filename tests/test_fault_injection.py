"""Fault injection: real processes killed (kill -9) at a seeded random moment inside their write window,
then resumed or run again.

A clock started with the process says nothing about where a kill lands: on a loaded machine a kill 1-3 s
after start lands during start-up, before anything is written, and every outcome passes. Here each
writer's window is measured from the process itself. It runs with ``HYRAX_FAULT=<its first write>:1:stop``
(:mod:`hyrax.faults`): it halts itself (SIGSTOP) right after its first write (the first results chunk's
files, the first checkpoint's bytes, the first batch in the index, the scores' files), the test sees that
write on disk and lets it go on (SIGCONT). An uninterrupted calibration run, measured the same way,
gives the window: from its first write to the moment its run reads complete on disk (polled every 5 ms).
A killed run is let go on for a seeded random fraction of that window, then killed. What it left is read
from disk before the resume (rows and commits, checkpoints, vectors in the index) and recorded
(:func:`tests.fault_table.record_landing`); a test fails if nothing was written. A kill that lands after
the run completed tests no resume: that draw is redrawn (a fresh run, the next number of the same seeded
generator), at most :data:`REDRAWS` times, and the test fails when every draw landed after completion.

Every run ends either complete and exactly right (every id once, values equal to an uninterrupted run)
or refused with a clear message; never complete and wrong. All of it is ``-m slow`` (train's first seed
alone takes ~30 s): ``python -m pytest tests/test_fault_injection.py -m slow`` runs three seeds for infer, train,
reduce_dimensions, outliers and save_to_database on each backend, and the two race tests.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hyrax.results.run_dir import find_latest_run, runs_of
from hyrax.results.store import ResultDataset, table_path
from tests.conftest import run_hyrax
from tests.fault_table import record_landing
from tests.test_fault_points import _checkpoints, _table_state

SLOW = """
import time
import numpy as np
import torch
from torch import nn
from hyrax.datasets import HyraxDataset
from hyrax.models import hyrax_model

class SlowVectors(HyraxDataset):
    def __len__(self):
        return 400

    def get_object_id(self, idx):
        return f"v{idx:04d}"

    def get_flux(self, idx):
        time.sleep(0.003)
        rng = np.random.default_rng(idx)
        return rng.normal(size=8).astype(np.float32)


@hyrax_model
class TinyAutoencoder(nn.Module):
    def __init__(self, config, data_sample=None):
        super().__init__()
        self.encode, self.decode = nn.Linear(8, 3), nn.Linear(3, 8)

    def forward(self, x):
        return self.decode(self.encode(x))

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["flux"]

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = (self(x) - x).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def infer_batch(self, x):
        return self.encode(x)
"""

CONFIG = """
[general]
results_dir = "{results}"
threads = 1
[model]
name = "{model}"
[train]
epochs = 4
resume = {resume}
[infer]
model_weights_file = "{weights}"
commit_seconds = 0.1
[data_set]
seed = 1
[data_loader]
batch_size = 16
num_workers = 0
[data_request.infer.data]
dataset_class = "slowvectors.SlowVectors"
[data_request.train.data]
dataset_class = "slowvectors.SlowVectors"
[reduce_dimensions]
name = "pca"
batch_size = 16
[vector_db]
name = "{backend}"
vector_db_dir = "{index}"
[vector_db.lance]
index_threshold = 100
[outliers]
k = 5
"""

IDS = [f"v{i:04d}" for i in range(400)]

#: A draw that lands after the run completed is drawn again at most this many times; then the test fails.
#: That run's window was shorter than the draw, so the next is drawn inside the part before it.
REDRAWS = 5

#: Seeds of the random kills, per writer (all -m slow).
SEEDS = [0, 1, 2]

# save_to_database from the command line inserts 65,536 vectors a batch: the 400 here would be one
# batch, and the index marked complete straight after it. The killed saves call the same library function
# in a process of their own with 16 a batch, so that the window holds 25 inserts.
SAVE = """
import sys
from hyrax.config import ConfigManager
from hyrax.vector_db.connection import save_to_database
save_to_database(ConfigManager(sys.argv[1]).config, batch_size=16)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(base folder, env, loopback weights, the infer values an uninterrupted run gives)."""
    base = tmp_path_factory.mktemp("faults")
    (base / "slowvectors.py").write_text(SLOW)
    env = {**os.environ, "PYTHONPATH": f"{base}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("HYRAX_FAULT", None)
    weights = base / "weights" / "w.pth"
    weights.parent.mkdir()
    make = (
        "from hyrax.config import ConfigManager\nfrom hyrax.models.loopback import HyraxLoopback\n"
        f"HyraxLoopback(ConfigManager().config).save(r'{weights}')\n"
    )
    subprocess.run([sys.executable, "-c", make], check=True, env=env, timeout=120)
    rng = [np.random.default_rng(i).normal(size=8).astype(np.float32) for i in range(400)]
    return base, env, weights, np.stack(rng)


def _config(
    base: Path,
    weights: Path,
    name: str,
    backend: str = "chromadb",
    model: str = "HyraxLoopback",
    resume: str | None = None,
) -> Path:
    path = base / f"{name}.toml"
    path.write_text(
        CONFIG.format(
            results=base / name / "results",
            weights=weights,
            index=base / name / "index",
            backend=backend,
            model=model,
            resume=f'"{resume}"' if resume else "false",
        )
    )
    return path


def _hyrax(env, *args, timeout=300):
    return run_hyrax(*args, env=env, timeout=timeout)


def _check_infer(run: Path, reference: np.ndarray) -> None:
    results = ResultDataset(data_location=run)
    assert results.ids().tolist() == IDS  # every id once, in order
    np.testing.assert_array_equal(results[np.arange(400)], reference)


def _stopped(process: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until ``process`` has stopped itself (HYRAX_FAULT=<point>:<n>:stop), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode} before its fault point"
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    pytest.fail(f"pid {process.pid} never reached its fault point")


# -- the writers: how each is started, where its first write is, what it left on disk ------------------


def _only_started(results: Path, verb: str) -> Path | None:
    started = runs_of(results, verb, complete_only=False)
    assert len(started) <= 1, started
    return started[0].path if started else None


def _run_table(verb: str) -> Callable[[Path], dict]:
    """The state of the results table of the work folder's one VERB run (nothing yet: zeros)."""

    def landed(work: Path) -> dict:
        run = _only_started(work / "results", verb)
        return _table_state(run) if run else {"version": 0, "rows": 0, "uncommitted_files": 0}

    return landed


def _train_state(work: Path) -> dict:
    run = _only_started(work / "results", "train")
    return (
        _checkpoints(run) if run else {"epochs": [], "temporary": [], "best": False, "final_weights": False}
    )


def _scores_state(work: Path) -> dict:
    from hyrax.vector_db.outliers import scores_path

    path = scores_path(find_latest_run(work / "results", "infer"))
    versions = path / "_versions"
    return {
        "data_files": len(list((path / "data").glob("*.lance"))) if (path / "data").is_dir() else 0,
        "committed": len(list(versions.iterdir())) if versions.is_dir() else 0,
    }


def _index_state(work: Path) -> dict:
    """chromadb, qdrant: the vectors in the index (read from its SQLite files) and its completion mark."""
    import contextlib
    import sqlite3

    index = work / "index"
    vectors = 0
    for database, query in (
        # chromadb: its write-ahead log (embeddings_queue) and the ids applied from it, each id once
        (
            "chroma.sqlite3",
            "SELECT COUNT(*) FROM (SELECT embedding_id FROM embeddings UNION SELECT id FROM embeddings_queue)",
        ),
        ("storage.sqlite", "SELECT COUNT(*) FROM points"),  # qdrant's local mode, one per collection
    ):
        for path in index.rglob(database):
            # Read-write: after a kill, a hot journal is rolled back by the first reader, as the backend
            # would on opening it (read-only, SQLite refuses). While the writer is halted, it only reads.
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
                vectors += connection.execute(query).fetchone()[0]
    return {"vectors": vectors, "marked_complete": _marked_complete(work)}


def _marked_complete(work: Path) -> bool:
    """Whether the index says it is complete (its marker only: polled while the save writes, it must not
    take the backend's database locks)."""
    import json

    from hyrax.vector_db.base import MARKER

    marker = work / "index" / MARKER
    return bool(marker.is_file() and json.loads(marker.read_text()).get("complete"))


def _lance_index_state(work: Path) -> dict:
    """lance: the index files written into the infer run's table, and the versions committed since the
    copy of the infer run (work/../infer-calibration) was made (0: no index committed)."""

    def versions(results: Path) -> int:
        return len(list((table_path(find_latest_run(results, "infer")) / "_versions").iterdir()))

    path = table_path(find_latest_run(work / "results", "infer"))
    files = [p for p in (path / "_indices").rglob("*") if p.is_file()] if (path / "_indices").is_dir() else []
    copied = versions(work.parent / "infer-calibration" / "results")
    return {"index_files": len(files), "index_commits": versions(work / "results") - copied}


@dataclass(frozen=True)
class Writer:
    """One verb under random kills."""

    name: str
    first_write: str  # the fault point whose first arrival is the verb's first write
    command: Callable[[Path], list]  # its config -> the command line
    landed: Callable[[Path], dict]  # its work folder -> what its writing left there
    wrote: Callable[[dict], bool]  # whether that holds a write
    complete: Callable[[Path], bool]  # whether its writing is complete
    needs_infer: bool = True  # its work folder starts with a copy of a complete infer run
    backend: str = "chromadb"


def _hyrax_command(*verb: str) -> Callable[[Path], list]:
    return lambda config: [sys.executable, "-m", "hyrax", *verb, "-c", str(config)]


def _run_complete(verb: str) -> Callable[[Path], bool]:
    return lambda work: find_latest_run(work / "results", verb) is not None


_SAVE_COMMAND = lambda config: [sys.executable, "-c", SAVE, str(config)]  # noqa: E731

WRITERS = {
    writer.name: writer
    for writer in [
        Writer(
            "infer",
            "results.fragment_written",
            _hyrax_command("infer"),
            _run_table("infer"),
            lambda s: s["rows"] > 0 or s["uncommitted_files"] > 0,
            _run_complete("infer"),
            needs_infer=False,
        ),
        Writer(
            "train",
            "checkpoint.temporary_written",
            _hyrax_command("train"),
            _train_state,
            lambda s: bool(s["epochs"] or s["temporary"]),
            _run_complete("train"),
            needs_infer=False,
        ),
        Writer(
            "reduce_dimensions",
            "results.fragment_written",
            _hyrax_command("reduce_dimensions"),
            _run_table("reduce_dimensions"),
            lambda s: s["rows"] > 0 or s["uncommitted_files"] > 0,
            _run_complete("reduce_dimensions"),
        ),
        Writer(
            "outliers",
            "derived_table.written",
            _hyrax_command("outliers"),
            _scores_state,
            lambda s: s["data_files"] > 0,
            lambda work: _scores_state(work)["committed"] > 0,
        ),
        *(
            Writer(
                f"save_to_database ({backend})",
                "vector_db.batch_inserted",
                _SAVE_COMMAND,
                _index_state,
                lambda s: s["vectors"] > 0,
                _marked_complete,
                backend=backend,
            )
            for backend in ("chromadb", "qdrant")
        ),
        Writer(
            "save_to_database (lance)",
            "vector_db.index_segment_written",
            _SAVE_COMMAND,
            _lance_index_state,
            lambda s: s["index_files"] > 0,
            lambda work: _lance_index_state(work)["index_commits"] > 0,
            backend="lance",
        ),
    ]
}


class Calibration:
    """Per writer, made once (lazily: the default suite calibrates train only): an uninterrupted run,
    measured from its first write to its completion, whose results are also the reference."""

    def __init__(self, setup):
        self.setup = setup
        self.windows: dict[str, float] = {}

    def prepare(self, writer: Writer, name: str) -> tuple[Path, Path]:
        """(config, work folder) for a fresh run of WRITER."""
        base, _, weights, _ = self.setup
        model = "slowvectors.TinyAutoencoder" if writer.name == "train" else "HyraxLoopback"
        shutil.rmtree(base / name, ignore_errors=True)
        config = _config(base, weights, name, backend=writer.backend, model=model)
        if writer.needs_infer:
            shutil.copytree(self.work(WRITERS["infer"]) / "results", base / name / "results")
        return config, base / name

    def work(self, writer: Writer) -> Path:
        """The calibration run's work folder (its results are the reference)."""
        self.window(writer)
        return self.setup[0] / f"{writer.name}-calibration".replace(" ", "")

    def window(self, writer: Writer) -> float:
        if writer.name not in self.windows:
            _, env, _, _ = self.setup
            name = f"{writer.name}-calibration".replace(" ", "")
            config, work = self.prepare(writer, name)
            process = _start(env, writer, config, work)
            try:
                _stopped(process)
                assert writer.wrote(writer.landed(work)), f"{writer.first_write}: reached, nothing on disk"
                process.send_signal(signal.SIGCONT)
                started = time.monotonic()
                while not writer.complete(work) and process.poll() is None:
                    time.sleep(0.005)
                window = time.monotonic() - started
            except BaseException:
                process.kill()
                raise
            assert process.wait(timeout=300) == 0, (work / "stderr.txt").read_text()[-2000:]
            assert writer.complete(work)
            self.windows[writer.name] = window
            print(f"{writer.name}: write window {window:.2f} s")
        return self.windows[writer.name]


@pytest.fixture(scope="module")
def calibration(setup):
    return Calibration(setup)


def _start(env: dict, writer: Writer, config: Path, work: Path) -> subprocess.Popen:
    """WRITER's command, halting itself (SIGSTOP) right after its first write."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "stderr.txt", "w") as stderr:
        return subprocess.Popen(
            writer.command(config),
            env={**env, "HYRAX_FAULT": f"{writer.first_write}:1:stop"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def _killed_in_window(calibration: Calibration, writer: Writer, seed: int) -> tuple[Path, Path, dict]:
    """Start WRITER, let it go on a seeded random fraction of its write window past its first write, kill
    it (SIGKILL); return (config, work folder, where it landed). A draw that lands after the run completed
    is redrawn, inside the part of the window before it; one that finds nothing written fails."""
    _, env, _, _ = calibration.setup
    window = calibration.window(writer)
    draws = random.Random(seed)
    fraction = 1.0
    for redraw in range(REDRAWS + 1):
        fraction *= draws.random()
        name = f"{writer.name}-{seed}-{redraw}".replace(" ", "")
        config, work = calibration.prepare(writer, name)
        process = _start(env, writer, config, work)
        try:
            _stopped(process)
            assert writer.wrote(writer.landed(work)), f"{writer.first_write}: reached with nothing on disk"
            process.send_signal(signal.SIGCONT)
            time.sleep(fraction * window)
            exited = process.poll()
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        assert exited in (None, 0), (work / "stderr.txt").read_text()[-2000:]
        landed = writer.landed(work)
        if exited is None and not writer.complete(work):
            assert writer.wrote(landed), f"struck before the first write: {landed}"
            at = {"after_first_write_s": round(fraction * window, 3), "of_window": round(fraction, 3)}
            return config, work, {**landed, **at, "redraws": redraw}
        print(f"{writer.name} seed {seed}: draw {fraction:.3f} of {window:.2f} s landed after completion")
    pytest.fail(f"{writer.name}: all {REDRAWS + 1} draws landed after the run completed ({window:.2f} s)")


# -- infer and train: resumed --------------------------------------------------------------------------


def check_infer(setup, calibration, seed: int) -> None:
    _, env, _, reference = setup
    _, work, landed = _killed_in_window(calibration, WRITERS["infer"], seed)
    run = _only_started(work / "results", "infer")
    assert find_latest_run(work / "results", "infer") is None  # not complete
    with pytest.raises(Exception, match="not a complete one"):
        ResultDataset(data_location=run)  # never read as if whole
    done = _hyrax(env, "infer", "--resume", run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert find_latest_run(work / "results", "infer") == run
    _check_infer(run, reference)
    record_landing("infer", "random window", landed, "resumed: every id once, equal to an uninterrupted run")


def _final_weights(results: Path) -> dict:
    import torch

    run = find_latest_run(results, "train")
    return torch.load(run / "example_model.pth", weights_only=True)


def check_train(setup, calibration, seed: int) -> None:
    import torch

    _, env, _, _ = setup
    reference = _final_weights(calibration.work(WRITERS["train"]) / "results")
    _, work, landed = _killed_in_window(calibration, WRITERS["train"], seed)
    run = _only_started(work / "results", "train")
    assert find_latest_run(work / "results", "train") is None  # not complete
    done = _hyrax(env, "train", "--resume", run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert find_latest_run(work / "results", "train") == run
    final = _final_weights(work / "results")
    assert final.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(final[key], value), key
    record_landing("train", "random window", landed, "resumed: weights equal to an uninterrupted run's")


@pytest.mark.slow  # ~30 s; the default suite keeps the infer fault point (test_fault_points.py)
def test_train_killed_inside_its_write_window_then_resumed(setup, calibration):
    """A training killed at a random moment after its first checkpoint write, resumed from its run, ends
    with the weights of an uninterrupted training, bit for bit."""
    check_train(setup, calibration, SEEDS[0])


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS[1:])
def test_train_killed_inside_its_write_window_other_seeds(setup, calibration, seed):
    check_train(setup, calibration, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_infer_killed_inside_its_write_window_then_resumed(setup, calibration, seed):
    check_infer(setup, calibration, seed)


# -- reduce_dimensions, outliers, save_to_database: run again ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_reduce_dimensions_killed_inside_its_write_window_then_run_again(setup, calibration, seed):
    _, env, _, _ = setup
    writer = WRITERS["reduce_dimensions"]
    reference = find_latest_run(calibration.work(writer) / "results", "reduce_dimensions")
    config, work, landed = _killed_in_window(calibration, writer, seed)
    results = work / "results"
    killed = _only_started(results, "reduce_dimensions")
    with pytest.raises(Exception, match="not a complete one"):
        ResultDataset(data_location=killed)  # the killed map is never read as if whole
    done = _hyrax(env, "reduce_dimensions", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    again = find_latest_run(results, "reduce_dimensions")
    assert again != killed
    remade = ResultDataset(data_location=again)
    assert remade.ids().tolist() == IDS
    expected = ResultDataset(data_location=reference)[np.arange(400)]
    np.testing.assert_allclose(remade[np.arange(400)], expected, atol=1e-5)  # same seed, same data: same map
    record_landing(
        "reduce_dimensions", "random window", landed, "killed map refused; run again: the same map"
    )


def _scores(work: Path) -> np.ndarray:
    from hyrax.vector_db.outliers import read_scores

    return read_scores(find_latest_run(work / "results", "infer"), np.arange(400))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_outliers_killed_inside_its_write_window_then_run_again(setup, calibration, seed):
    from hyrax.vector_db.outliers import ranked

    _, env, _, _ = setup
    writer = WRITERS["outliers"]
    reference = _scores(calibration.work(writer))
    config, work, landed = _killed_in_window(calibration, writer, seed)
    assert np.isnan(_scores(work)).all()  # uncommitted scores are none, not some
    done = _hyrax(env, "outliers", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(_scores(work), reference)
    assert len(ranked(find_latest_run(work / "results", "infer"))) == 400
    record_landing("outliers", "random window", landed, "no scores read; run again: equal")


def _search_refused(env, config) -> None:
    """Searching an index a killed save left unfinished is refused, saying why."""
    searched = _hyrax(env, "database_connection", "--id", "v0007", "-k", "3", "-c", config)
    assert searched.returncode != 0, searched.stdout
    assert "unfinished" in searched.stderr, searched.stderr[-2000:]


def _search_right(env, config, reference) -> None:
    searched = _hyrax(env, "database_connection", "--id", "v0007", "-k", "3", "-c", config)
    assert searched.returncode == 0, searched.stderr[-2000:]
    lines = [line.split() for line in searched.stdout.splitlines()]
    nearest = np.argsort(np.linalg.norm(reference - reference[7], axis=1), kind="stable")[:3]
    assert [line[1] for line in lines] == [IDS[i] for i in nearest]


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("backend", ["chromadb", "qdrant", "lance"])
def test_save_to_database_killed_inside_its_write_window_then_run_again(setup, calibration, backend, seed):
    _, env, _, reference = setup
    writer = WRITERS[f"save_to_database ({backend})"]
    config, work, landed = _killed_in_window(calibration, writer, seed)
    if backend == "lance":  # it indexes the results table in place: with no index committed, exact search
        _search_right(env, config, reference)
    else:
        _search_refused(env, config)
    done = _hyrax(env, "save_to_database", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "400 objects" in done.stdout
    _search_right(env, config, reference)
    searched = "searched exactly while unfinished" if backend == "lance" else "refused while unfinished"
    record_landing(writer.name, "random window", landed, f"{searched}; run again: right")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["chromadb", "qdrant"])
def test_save_to_database_killed_as_soon_as_it_marked_the_index_complete(setup, calibration, backend):
    """An index that says complete holds every vector, even when its writer is killed the moment it
    says so (polled every 2 ms): what was marked complete must be on disk, not in the process."""
    _, env, _, reference = setup
    writer = WRITERS[f"save_to_database ({backend})"]
    config, work = calibration.prepare(writer, f"{writer.name}-marked".replace(" ", ""))
    process = _start(env, writer, config, work)
    try:
        _stopped(process)
        process.send_signal(signal.SIGCONT)
        while not writer.complete(work) and process.poll() is None:
            time.sleep(0.002)
    finally:
        process.kill()
        process.wait(timeout=60)
    landed = writer.landed(work)
    record_landing(writer.name, "killed when marked complete", landed, f"{landed['vectors']} of 400 vectors")
    assert landed["marked_complete"] and landed["vectors"] == 400, landed
    _search_right(env, config, reference)


# -- races: exactly one writer -------------------------------------------------------------------------


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_two_save_to_database_racing(setup):
    """A second save into an index while the first is writing it (the first halted by SIGSTOP after its
    first batch, holding its lock): exactly one writes, the other is refused naming the first's pid; the
    index ends whole and right."""
    base, env, weights, reference = setup
    config = _config(base, weights, "index-race", backend="qdrant")
    assert _hyrax(env, "infer", "-c", config).returncode == 0
    first = subprocess.Popen(
        [sys.executable, "-m", "hyrax", "save_to_database", "-c", str(config)],
        env={**env, "HYRAX_FAULT": "vector_db.batch_inserted:1:stop"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _stopped(first)
        second = _hyrax(env, "save_to_database", "-c", config)
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert "400 objects" in out
    assert second.returncode != 0, "both writers succeeded: the one-writer lock let the second in"
    assert f"is being written by pid {first.pid}" in second.stderr, second.stderr[-2000:]
    assert "Wait for it to finish" in second.stderr
    _search_right(env, config, reference)
    again = _hyrax(env, "save_to_database", "-c", config)
    assert again.returncode == 0 and "400 objects" in again.stdout
    record_landing(
        "save_to_database (qdrant) race",
        "vector_db.batch_inserted:1:stop",
        {"writers_ok": 1, "refused": 1},
        "one wrote; the other refused naming its pid",
    )


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_two_outliers_racing(setup, calibration):
    """A second scorer of a run while the first is writing its scores (halted by SIGSTOP with its files
    written, not committed, holding the scoring lock): the second waits for it, saying so and naming its
    pid, then reuses its scores; the table is written once."""
    import lance

    from hyrax.vector_db.outliers import scores_path

    _, env, _, _ = setup
    writer = WRITERS["outliers"]
    reference = _scores(calibration.work(writer))
    config, work = calibration.prepare(writer, "outliers-race")
    first = subprocess.Popen(
        writer.command(config),
        env={**env, "HYRAX_FAULT": "derived_table.written:1:stop"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second = None
    try:
        _stopped(first)
        second = subprocess.Popen(
            writer.command(config), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(8)  # long past its start-up: it must be waiting on the lock, not done
        assert second.poll() is None, (
            f"the second scorer ended ({second.returncode}) while the first held the lock"
        )
    finally:
        first.send_signal(signal.SIGCONT)
    first_out, first_err = first.communicate(timeout=300)
    second_out, second_err = second.communicate(timeout=300)
    assert first.returncode == 0, first_err[-2000:]
    assert second.returncode == 0, second_err[-2000:]
    assert f"pid {first.pid}" in second_err and "computing the outlier scores" in second_err, second_err[
        -2000:
    ]
    assert "up to date" in second_err and "reused" in second_err, second_err[-2000:]  # not scored again
    np.testing.assert_array_equal(_scores(work), reference)
    table = lance.dataset(str(scores_path(find_latest_run(work / "results", "infer"))))
    assert table.count_rows() == 400 and table.version == 1  # written once, not twice
    record_landing(
        "outliers race",
        "derived_table.written:1:stop",
        {"versions": table.version},
        "one wrote; the other waited (naming its pid) and reused its scores",
    )
