"""Fault injection: real processes killed (kill -9) at seeded random moments, then run again.

Every run ends either complete and exactly right (every id once, values equal to an uninterrupted run) or
refused with a clear message; never complete and wrong. The default suite runs a few seeds per verb;
``-m slow`` runs the long form: 20 seeds for infer, train, outliers and reduce_dimensions, 7 for each
save_to_database backend.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hyrax.results.run_dir import RunDir, find_latest_run, runs_of
from hyrax.results.store import ResultDataset
from tests.conftest import run_hyrax

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
[outliers]
k = 5
"""

IDS = [f"v{i:04d}" for i in range(400)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(env, config, reference) where reference holds an uninterrupted run's infer values."""
    base = tmp_path_factory.mktemp("faults")
    (base / "slowvectors.py").write_text(SLOW)
    env = {**os.environ, "PYTHONPATH": f"{base}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
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


def _killed(env, args, seed: int, low: float, high: float) -> None:
    """Start ``hyrax ARGS`` and kill -9 it after a seeded random delay (it may have finished by then)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hyrax", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(random.Random(seed).uniform(low, high))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _check_infer(run: Path, reference: np.ndarray) -> None:
    results = ResultDataset(data_location=run)
    assert results.ids().tolist() == IDS  # every id once, in order
    np.testing.assert_array_equal(results[np.arange(400)], reference)


def _seeds(count):
    return list(range(count))


@pytest.mark.slow  # infer killed and resumed: tests/results/test_inference.py waits for the first rows
@pytest.mark.parametrize("seed", _seeds(1))
def test_infer_killed_at_random_then_resumed(setup, seed):
    base, env, weights, reference = setup
    config = _config(base, weights, f"infer{seed}")
    results = base / f"infer{seed}" / "results"
    _killed(env, ["infer", "-c", config], seed, 1.0, 3.5)
    run = find_latest_run(results, "infer")
    if run is not None:  # finished before the kill: it must be right
        _check_infer(run, reference)
        return
    started = runs_of(results, "infer", complete_only=False)
    if not started:  # killed before it made a run: nothing to resume
        assert _hyrax(env, "infer", "-c", config).returncode == 0
    else:
        assert not RunDir(started[-1].path).is_complete
        with pytest.raises(Exception, match="not a complete one"):
            ResultDataset(data_location=started[-1].path)  # never read as if whole
        done = _hyrax(env, "infer", "--resume", started[-1].path)
        assert done.returncode == 0, done.stderr[-2000:]
    _check_infer(find_latest_run(results, "infer"), reference)


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
@pytest.mark.parametrize("seed", _seeds(1))
def test_reduce_dimensions_killed_at_random_then_run_again(setup, seed):
    base, env, weights, reference = setup
    config = _config(base, weights, f"reduce{seed}")
    results = base / f"reduce{seed}" / "results"
    assert _hyrax(env, "infer", "-c", config).returncode == 0
    _killed(env, ["reduce_dimensions", "-c", config], seed, 1.0, 3.0)
    for run in runs_of(results, "reduce_dimensions", complete_only=False):
        if run.is_complete:  # a complete map is a whole and right one
            assert ResultDataset(data_location=run.path).ids().tolist() == IDS
    done = _hyrax(env, "reduce_dimensions", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    maps = [r.path for r in runs_of(results, "reduce_dimensions")]
    values = [ResultDataset(data_location=m)[np.arange(400)] for m in maps]
    assert all(ResultDataset(data_location=m).ids().tolist() == IDS for m in maps)
    for other in values[1:]:  # same seed, same data: every complete map is the same map
        np.testing.assert_allclose(other, values[0], atol=1e-5)


def _search_ok_or_refused(env, config) -> None:
    """Searching an index a killed save left: a right answer, or refused saying why (never a wrong one)."""
    searched = _hyrax(env, "database_connection", "--id", "v0007", "-k", "3", "-c", config)
    if searched.returncode != 0:  # an unfinished index is refused, saying so
        assert "unfinished" in searched.stderr or "run `hyrax save_to_database` first" in searched.stderr
    else:  # it had finished: it answers right
        assert searched.stdout.split()[1] == "v0007"


def _search_right(env, config, reference) -> None:
    searched = _hyrax(env, "database_connection", "--id", "v0007", "-k", "3", "-c", config)
    assert searched.returncode == 0, searched.stderr[-2000:]
    lines = [line.split() for line in searched.stdout.splitlines()]
    nearest = np.argsort(np.linalg.norm(reference - reference[7], axis=1), kind="stable")[:3]
    assert [line[1] for line in lines] == [IDS[i] for i in nearest]


# One backend in the default suite; every backend in the long form (-m slow).
SAVES = [("chromadb", 0)]


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
@pytest.mark.parametrize(("backend", "seed"), SAVES)
def test_save_to_database_killed_at_random_then_run_again(setup, backend, seed):
    base, env, weights, reference = setup
    config = _config(base, weights, f"index-{backend}{seed}", backend=backend)
    assert _hyrax(env, "infer", "-c", config).returncode == 0
    _killed(env, ["save_to_database", "-c", config], seed, 1.5, 4.0)
    _search_ok_or_refused(env, config)
    done = _hyrax(env, "save_to_database", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "400 objects" in done.stdout
    _search_right(env, config, reference)


def _racing(env, *commands) -> list[subprocess.CompletedProcess]:
    """Start every command at once; return them finished (stdout and stderr as text)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "hyrax", *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    done = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def _stopped(process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``process`` has stopped itself (HYRAX_FAULT=<point>:<n>:stop), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode} before its fault point"
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    pytest.fail(f"pid {process.pid} never reached its fault point")


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


def _scores(config_dir: Path) -> np.ndarray:
    from hyrax.vector_db.outliers import read_scores

    return read_scores(find_latest_run(config_dir / "results", "infer"), np.arange(400))


@pytest.fixture(scope="module")
def reference_scores(setup):
    base, env, weights, _ = setup
    config = _config(base, weights, "outliers-reference")
    assert _hyrax(env, "infer", "-c", config).returncode == 0
    assert _hyrax(env, "outliers", "-c", config).returncode == 0
    return _scores(base / "outliers-reference")


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
@pytest.mark.parametrize("seed", _seeds(1))
def test_outliers_killed_at_random_then_run_again(setup, reference_scores, seed):
    from hyrax.vector_db.outliers import ranked

    base, env, weights, _ = setup
    config = _config(base, weights, f"outliers{seed}")
    assert _hyrax(env, "infer", "-c", config).returncode == 0
    _killed(env, ["outliers", "-c", config], seed, 1.5, 4.0)
    scores = _scores(base / f"outliers{seed}")
    assert np.isnan(scores).all() or np.array_equal(scores, reference_scores)  # none, or all and right
    done = _hyrax(env, "outliers", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(_scores(base / f"outliers{seed}"), reference_scores)
    assert len(ranked(find_latest_run(base / f"outliers{seed}" / "results", "infer"))) == 400


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_two_outliers_racing(setup, reference_scores):
    """Two scorers at once: the second waits for the first and reuses its scores; every object once."""
    base, env, weights, _ = setup
    config = _config(base, weights, "outliers-race")
    assert _hyrax(env, "infer", "-c", config).returncode == 0
    for done in _racing(env, ["outliers", "-c", config], ["outliers", "-c", config]):
        assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(_scores(base / "outliers-race"), reference_scores)
    import lance

    from hyrax.vector_db.outliers import scores_path

    table = lance.dataset(str(scores_path(find_latest_run(base / "outliers-race" / "results", "infer"))))
    assert table.count_rows() == 400 and table.version == 1  # written once, not twice


def _final_weights(results: Path) -> dict:
    import torch

    run = find_latest_run(results, "train")
    return torch.load(run / "example_model.pth", weights_only=True)


@pytest.fixture(scope="module")
def reference_weights(setup):
    base, env, weights, _ = setup
    config = _config(base, weights, "train-reference", model="slowvectors.TinyAutoencoder")
    done = _hyrax(env, "train", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    return _final_weights(base / "train-reference" / "results")


@pytest.mark.parametrize("seed", _seeds(1))
def test_train_killed_at_random_then_resumed(setup, reference_weights, seed):
    """A training killed at a random moment, resumed from its run (or started again when it had no
    checkpoint yet), ends with the weights of an uninterrupted training, bit for bit."""
    import torch

    base, env, weights, _ = setup
    name = f"train{seed}"
    config = _config(base, weights, name, model="slowvectors.TinyAutoencoder")
    results = base / name / "results"
    _killed(env, ["train", "-c", config], seed, 2.0, 7.0)
    if find_latest_run(results, "train") is None:
        started = runs_of(results, "train", complete_only=False)
        has_checkpoint = started and list(started[-1].path.glob("checkpoint_epoch_*.pt"))
        if has_checkpoint:
            assert not started[-1].is_complete
            config = _config(
                base, weights, name, model="slowvectors.TinyAutoencoder", resume=started[-1].path
            )
        done = _hyrax(env, "train", "-c", config)
        assert done.returncode == 0, done.stderr[-2000:]
    final = _final_weights(results)
    assert final.keys() == reference_weights.keys()
    for key, value in reference_weights.items():
        assert torch.equal(final[key], value), key


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds(20))
def test_infer_killed_at_random_long_form(setup, seed):
    test_infer_killed_at_random_then_resumed(setup, 100 + seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds(20))
def test_train_killed_at_random_long_form(setup, reference_weights, seed):
    test_train_killed_at_random_then_resumed(setup, reference_weights, 100 + seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds(20))
def test_outliers_killed_at_random_long_form(setup, reference_scores, seed):
    test_outliers_killed_at_random_then_run_again(setup, reference_scores, 100 + seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds(20))
def test_reduce_dimensions_killed_at_random_long_form(setup, seed):
    test_reduce_dimensions_killed_at_random_then_run_again(setup, 100 + seed)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "seed"), [(b, 100 + i) for b in ("chromadb", "qdrant", "lance") for i in range(7)]
)
def test_save_to_database_killed_at_random_long_form(setup, backend, seed):
    test_save_to_database_killed_at_random_then_run_again(setup, backend, seed)
