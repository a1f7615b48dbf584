"""Fault injection: real processes killed (kill -9) at seeded random moments, then run again.

Every run ends either complete and exactly right (every id once, values equal to an uninterrupted run) or
refused with a clear message; never complete and wrong. The default suite runs a few seeds per verb;
``-m slow`` runs 20 (the long form).
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
from hyrax.datasets import HyraxDataset

class SlowVectors(HyraxDataset):
    def __len__(self):
        return 400

    def get_object_id(self, idx):
        return f"v{idx:04d}"

    def get_flux(self, idx):
        time.sleep(0.003)
        rng = np.random.default_rng(idx)
        return rng.normal(size=8).astype(np.float32)
"""

CONFIG = """
[general]
results_dir = "{results}"
[model]
name = "HyraxLoopback"
[infer]
model_weights_file = "{weights}"
commit_seconds = 0.1
[data_loader]
batch_size = 16
num_workers = 0
[data_request.infer.data]
dataset_class = "slowvectors.SlowVectors"
[reduce_dimensions]
name = "pca"
batch_size = 16
[vector_db]
name = "chromadb"
vector_db_dir = "{index}"
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


def _config(base: Path, weights: Path, name: str) -> Path:
    path = base / f"{name}.toml"
    path.write_text(
        CONFIG.format(results=base / name / "results", weights=weights, index=base / name / "index")
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


@pytest.mark.parametrize("seed", _seeds(3))
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


@pytest.mark.parametrize("seed", _seeds(2))
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


@pytest.mark.parametrize("seed", _seeds(2))
def test_save_to_database_killed_at_random_then_run_again(setup, seed):
    base, env, weights, reference = setup
    config = _config(base, weights, f"index{seed}")
    assert _hyrax(env, "infer", "-c", config).returncode == 0
    _killed(env, ["save_to_database", "-c", config], seed, 1.5, 4.0)
    searched = _hyrax(env, "database_connection", "--id", "v0007", "-k", "3", "-c", config)
    if searched.returncode != 0:  # an unfinished index is refused, saying so
        assert "unfinished" in searched.stderr or "run `hyrax save_to_database` first" in searched.stderr
    else:  # it had finished: it answers right
        assert searched.stdout.split()[1] == "v0007"
    done = _hyrax(env, "save_to_database", "-c", config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "400 objects" in done.stdout
    searched = _hyrax(env, "database_connection", "--id", "v0007", "-k", "3", "-c", config)
    assert searched.returncode == 0 and searched.stdout.split()[1] == "v0007"


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds(20))
def test_infer_killed_at_random_long_form(setup, seed):
    test_infer_killed_at_random_then_resumed(setup, 100 + seed)
