"""Fault points: the real command line killed (SIGKILL, by itself) at a named point inside a writer, then
resumed; where the kill landed is read from disk before the resume, and the result must equal an
uninterrupted run's.

Unlike tests/test_fault_injection.py (kills at a random moment, which on a loaded machine may land before
anything was written), every case here is killed at a known moment after a write: ``HYRAX_FAULT=<point>:<n>``
(see :mod:`hyrax.faults`). A point that is never reached leaves the process alive and the test fails.

The default suite runs one infer case; ``python -m pytest tests/test_fault_points.py -m slow``
runs every point at three arrivals (infer: the n-th commit of 16 rows; train: the n-th epoch of 4) and
the end of each run under three data seeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hyrax.config import ConfigManager
from hyrax.faults import _parse
from hyrax.models.loopback import HyraxLoopback
from hyrax.results.run_dir import find_latest_run, runs_of
from hyrax.results.store import ResultDataset, table_path
from tests.conftest import run_hyrax
from tests.fault_table import record_landing

DATA = """
import numpy as np
from torch import nn
from hyrax.datasets import HyraxDataset
from hyrax.models import hyrax_model

class Vectors(HyraxDataset):
    def __len__(self):
        return 200

    def get_object_id(self, idx):
        return f"v{idx:04d}"

    def get_flux(self, idx):
        return np.random.default_rng(idx).normal(size=8).astype(np.float32)


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

# commit_seconds = 0: every batch of 16 is one commit, so the n-th commit holds exactly 16 n rows.
CONFIG = """
[general]
results_dir = "{results}"
threads = 1
[model]
name = "{model}"
[train]
epochs = 4
[infer]
model_weights_file = "{weights}"
commit_seconds = 0.0
[data_set]
seed = {seed}
[data_loader]
batch_size = 16
num_workers = 0
[data_request.infer.data]
dataset_class = "faultvectors.Vectors"
[data_request.train.data]
dataset_class = "faultvectors.Vectors"
[reduce_dimensions]
name = "pca"
batch_size = 16
[outliers]
k = 5
"""

N, BATCH, EPOCHS = 200, 16, 4
IDS = [f"v{i:04d}" for i in range(N)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(base folder, env, loopback weights, the infer values an uninterrupted run gives)."""
    base = tmp_path_factory.mktemp("fault_points")
    (base / "faultvectors.py").write_text(DATA)
    env = {**os.environ, "PYTHONPATH": f"{base}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("HYRAX_FAULT", None)
    weights = base / "w.pth"
    HyraxLoopback(ConfigManager().config).save(weights)
    reference = np.stack([np.random.default_rng(i).normal(size=8).astype(np.float32) for i in range(N)])
    return base, env, weights, reference


def _config(base: Path, weights: Path, name: str, model: str = "HyraxLoopback", seed: int = 1) -> Path:
    path = base / f"{name}.toml"
    text = CONFIG.format(results=base / name / "results", weights=weights, model=model, seed=seed)
    path.write_text(text)
    return path


def _killed_at(env: dict, point: str, *args) -> subprocess.CompletedProcess:
    """``hyrax ARGS`` with HYRAX_FAULT=POINT; it must have died by its own SIGKILL there."""
    done = run_hyrax(*args, env={**env, "HYRAX_FAULT": point}, timeout=300)
    assert done.returncode == -signal.SIGKILL, (
        f"HYRAX_FAULT={point}: expected death by SIGKILL, got exit {done.returncode}\n{done.stderr[-2000:]}"
    )
    return done


def _only_run(results: Path, verb: str) -> Path:
    started = runs_of(results, verb, complete_only=False)
    assert len(started) == 1, started
    assert not started[0].is_complete
    return started[0].path


# -- infer --------------------------------------------------------------------------------------------


def _table_state(run: Path) -> dict:
    """What the killed run left: Lance versions, committed rows, data files no version lists."""
    import lance

    path = table_path(run)
    files = sorted(p.name for p in (path / "data").glob("*.lance")) if (path / "data").is_dir() else []
    versions = path / "_versions"
    if not (versions.is_dir() and any(versions.iterdir())):
        return {"version": 0, "rows": 0, "uncommitted_files": len(files)}
    table = lance.dataset(str(path))
    listed = {f.path for fragment in table.get_fragments() for f in fragment.metadata.files}
    return {
        "version": table.version,
        "rows": table.count_rows(),
        "uncommitted_files": len([f for f in files if f not in listed]),
    }


def _expected_infer_state(point: str) -> dict:
    """Where a kill at POINT must have landed (commit_seconds = 0: one commit per batch of 16)."""
    name, arrival, _ = _parse(point)
    if name == "results.fragment_written":  # the n-th batch's file written, n - 1 commits
        return {"version": arrival - 1, "rows": BATCH * (arrival - 1), "uncommitted_files": 1}
    if name == "results.committed":  # n commits, nothing more
        return {"version": arrival, "rows": BATCH * arrival, "uncommitted_files": 0}
    assert name == "run.before_complete"  # every row written; the table closed (compacted)
    return {"rows": N}


def check_infer_killed_at(setup, point: str, name: str) -> dict:
    base, env, weights, reference = setup
    config = _config(base, weights, name)
    results = base / name / "results"
    _killed_at(env, point, "infer", "-c", config)
    run = _only_run(results, "infer")
    landed = _table_state(run)
    expected = _expected_infer_state(point)
    assert {key: landed[key] for key in expected} == expected, landed
    assert landed["rows"] or landed["uncommitted_files"], "struck before the first write"
    with pytest.raises(Exception, match="not a complete one"):
        ResultDataset(data_location=run)  # never read as if whole
    done = run_hyrax("infer", "--resume", run, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert find_latest_run(results, "infer") == run
    resumed = ResultDataset(data_location=run)
    assert resumed.ids().tolist() == IDS  # every id once, in order
    np.testing.assert_array_equal(resumed[np.arange(N)], reference)
    record_landing("infer", point, landed, "resumed: every id once, equal to an uninterrupted run")
    return landed


INFER_POINTS = [
    *(f"results.fragment_written:{n}" for n in (1, 2, 7)),
    *(f"results.committed:{n}" for n in (1, 4, 12)),
    "run.before_complete",
]


def test_infer_killed_between_a_write_and_its_commit_resumes_complete(setup):
    check_infer_killed_at(setup, "results.fragment_written:2", "infer-default")


@pytest.mark.slow
@pytest.mark.parametrize("point", INFER_POINTS)
def test_infer_killed_at_each_point_resumes_complete(setup, point):
    landed = check_infer_killed_at(setup, point, f"infer-{point.replace(':', '-')}")
    print(f"infer {point}: {landed}")


# -- train --------------------------------------------------------------------------------------------


def _weights(run: Path) -> dict:
    import torch

    return torch.load(run / "example_model.pth", weights_only=True)


_REFERENCES: dict[int, dict] = {}


def _reference_weights(setup, seed: int) -> dict:
    """The final weights of an uninterrupted training with data_set.seed = SEED (made once per seed)."""
    if seed not in _REFERENCES:
        base, env, weights, _ = setup
        name = f"train-reference-{seed}"
        config = _config(base, weights, name, model="faultvectors.TinyAutoencoder", seed=seed)
        done = run_hyrax("train", "-c", config, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        _REFERENCES[seed] = _weights(find_latest_run(base / name / "results", "train"))
    return _REFERENCES[seed]


def _checkpoints(run: Path) -> dict:
    return {
        "epochs": sorted(int(p.stem.rsplit("_", 1)[-1]) for p in run.glob("checkpoint_epoch_*.pt")),
        "temporary": sorted(p.name for p in run.glob(".*.tmp")),
        "best": (run / "best_checkpoint.pt").exists(),
        "final_weights": (run / "example_model.pth").exists(),
    }


def _expected_train_state(point: str) -> dict:
    name, arrival, _ = _parse(point)
    if name == "checkpoint.temporary_written":  # epoch n's checkpoint half-saved: epoch n - 1's stands
        previous = [arrival - 1] if arrival > 1 else []
        return {"epochs": previous, "temporary": [f".checkpoint_epoch_{arrival}.pt.tmp"]}
    if name == "train.epoch_checkpointed":  # epoch n's checkpoint saved, the next not begun
        return {"epochs": [arrival], "temporary": [], "best": True, "final_weights": False}
    assert name == "run.before_complete"  # the last epoch and the final weights saved, status running
    return {"epochs": [EPOCHS], "temporary": [], "final_weights": True}


def check_train_killed_at(setup, point: str, name: str, seed: int = 1) -> dict:
    import torch

    base, env, weights, _ = setup
    reference = _reference_weights(setup, seed)
    config = _config(base, weights, name, model="faultvectors.TinyAutoencoder", seed=seed)
    results = base / name / "results"
    _killed_at(env, point, "train", "-c", config)
    run = _only_run(results, "train")
    landed = _checkpoints(run)
    expected = _expected_train_state(point)
    assert {key: landed[key] for key in expected} == expected, landed
    assert landed["epochs"] or landed["temporary"], "struck before the first write"
    done = run_hyrax("train", "--resume", run, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert find_latest_run(results, "train") == run
    final = _weights(run)
    assert final.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(final[key], value), key
    assert not list(run.glob(".*.tmp"))  # no half-written checkpoint left behind
    record_landing("train", point, landed, "resumed: weights equal to an uninterrupted run's")
    return landed


TRAIN_POINTS = [
    *(f"checkpoint.temporary_written:{n}" for n in (1, 2, 4)),
    *(f"train.epoch_checkpointed:{n}" for n in (1, 2, 3)),
]


@pytest.mark.slow  # three processes (~25 s on 2 cores): the default suite has the infer case
def test_train_killed_after_an_epoch_checkpoint_resumes_to_the_same_weights(setup):
    check_train_killed_at(setup, "train.epoch_checkpointed:2", "train-default")


@pytest.mark.slow
@pytest.mark.parametrize("point", TRAIN_POINTS)
def test_train_killed_at_each_point_resumes_to_the_same_weights(setup, point):
    landed = check_train_killed_at(setup, point, f"train-{point.replace(':', '-')}")
    print(f"train {point}: {landed}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_train_killed_before_its_status_resumes_to_the_same_weights(setup, seed):
    landed = check_train_killed_at(setup, "run.before_complete", f"train-end-{seed}", seed=seed)
    print(f"train run.before_complete seed {seed}: {landed}")


# -- reduce_dimensions, outliers, labels: no resume; run again ----------------------------------------


def _infer(setup, name: str) -> tuple[Path, Path]:
    """(config, the complete infer run) in a fresh results folder."""
    base, env, weights, _ = setup
    config = _config(base, weights, name)
    done = run_hyrax("infer", "-c", config, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return config, find_latest_run(base / name / "results", "infer")


@pytest.fixture(scope="module")
def reference_map(setup):
    _, env, _, _ = setup
    config, infer = _infer(setup, "reduce-reference")
    done = run_hyrax("reduce_dimensions", "-c", config, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return ResultDataset(data_location=find_latest_run(infer.parent, "reduce_dimensions"))[np.arange(N)]


REDUCE_POINTS = ["results.fragment_written:1", "results.committed:1", "run.before_complete"]


@pytest.mark.slow
@pytest.mark.parametrize("point", REDUCE_POINTS)
def test_reduce_dimensions_killed_at_each_point_then_run_again(setup, reference_map, point):
    """The killed map is left unfinished (refused as such); a new run makes the same map."""
    _, env, _, _ = setup
    config, infer = _infer(setup, f"reduce-{point.replace(':', '-')}")
    _killed_at(env, point, "reduce_dimensions", "-c", config)
    killed = _only_run(infer.parent, "reduce_dimensions")
    landed = _table_state(killed)
    name, _, _ = _parse(point)
    expected = {
        "results.fragment_written": {"version": 0, "rows": 0, "uncommitted_files": 1},
        "results.committed": {"version": 1, "rows": N, "uncommitted_files": 0},
    }.get(name, {"rows": N})
    assert {key: landed[key] for key in expected} == expected, landed
    with pytest.raises(Exception, match="not a complete one"):
        ResultDataset(data_location=killed)
    done = run_hyrax("reduce_dimensions", "-c", config, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    again = find_latest_run(infer.parent, "reduce_dimensions")
    assert again != killed
    remade = ResultDataset(data_location=again)
    assert remade.ids().tolist() == IDS
    np.testing.assert_allclose(remade[np.arange(N)], reference_map, atol=1e-5)
    record_landing("reduce_dimensions", point, landed, "killed map refused; run again: the same map")
    print(f"reduce_dimensions {point}: {landed}")


def _scores(infer: Path) -> np.ndarray:
    from hyrax.vector_db.outliers import read_scores

    return read_scores(infer, np.arange(N))


@pytest.fixture(scope="module")
def reference_scores(setup):
    _, env, _, _ = setup
    config, infer = _infer(setup, "outliers-reference")
    done = run_hyrax("outliers", "-c", config, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return _scores(infer)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["derived_table.written:1", "derived_table.committed:1"])
def test_outliers_killed_at_each_point_then_run_again(setup, reference_scores, point):
    """Killed mid score write, the scores are none (not some); killed after the commit, all and right."""
    from hyrax.vector_db.outliers import scores_path

    _, env, _, _ = setup
    config, infer = _infer(setup, f"outliers-{point.replace(':', '-')}")
    _killed_at(env, point, "outliers", "-c", config)
    path = scores_path(infer)
    written = len(list((path / "data").glob("*.lance"))) if (path / "data").is_dir() else 0
    landed = {"data_files": written, "committed": _table_state_at(path)}
    assert written, "struck before the first write"
    scores = _scores(infer)
    if point.startswith("derived_table.written"):
        assert landed["committed"] == 0 and np.isnan(scores).all(), landed
    else:
        assert landed["committed"] == 1, landed
        np.testing.assert_array_equal(scores, reference_scores)
    done = run_hyrax("outliers", "-c", config, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(_scores(infer), reference_scores)
    record_landing("outliers", point, landed, "scores none or all and right; run again: equal")
    print(f"outliers {point}: {landed}")


def _table_state_at(path: Path) -> int:
    """The Lance version of the table at PATH (0: none committed)."""
    import lance

    versions = path / "_versions"
    return lance.dataset(str(path)).version if versions.is_dir() and any(versions.iterdir()) else 0


@pytest.mark.slow
@pytest.mark.parametrize("arrival", [1, 2, 3])
def test_label_killed_between_its_write_and_commit_then_run_again(setup, arrival):
    """Label calls killed at the n-th label write: the book holds the n - 1 before, whole; the call run
    again adds its labels once."""
    from hyrax.discovery.labels import LabelBook

    base, env, weights, _ = setup
    config = _config(base, weights, f"label-{arrival}")
    book = base / f"label-{arrival}" / "results" / "labels.lance"
    calls = [[f"v{i:04d}", f"v{i + 100:04d}"] for i in range(arrival)]
    for ids in calls[:-1]:
        done = run_hyrax("label", *ids, "--allow-unknown", "-c", config, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    _killed_at(env, "labels.fragment_written", "label", *calls[-1], "--allow-unknown", "-c", config)
    files = len(list((book / "data").glob("*.lance")))
    landed = {"version": _table_state_at(book), "data_files": files}
    assert landed == {"version": arrival - 1, "data_files": arrival}, landed
    done = run_hyrax("label", *calls[-1], "--allow-unknown", "-c", config, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import lance

    table = lance.dataset(str(book)).to_table().to_pydict()
    assert sorted(table["object_id"]) == sorted(i for ids in calls for i in ids)  # each labelled once
    assert LabelBook(book).exists()
    record_landing("label", f"labels.fragment_written:{arrival}", landed, "run again: each label once")
    print(f"label arrival {arrival}: {landed}")


# -- the mechanism ------------------------------------------------------------------------------------


def test_fault_variable_is_read_as_point_and_arrival():
    assert _parse("") == (None, 0, signal.SIGKILL)
    assert _parse("results.committed") == ("results.committed", 1, signal.SIGKILL)
    assert _parse("results.committed:3") == ("results.committed", 3, signal.SIGKILL)
    assert _parse("results.committed:2:stop") == ("results.committed", 2, signal.SIGSTOP)
    with pytest.raises(ValueError, match="counts from 1"):
        _parse("results.committed:0")
    with pytest.raises(ValueError, match="<point>"):
        _parse("results.committed:x")
    with pytest.raises(ValueError, match="only be 'stop'"):
        _parse("results.committed:1:pause")


def test_fault_point_does_nothing_unless_named():
    """An unnamed point returns at once; the named one kills at its n-th arrival, not before."""
    code = (
        "from hyrax.faults import fault_point\n"
        "fault_point('other'); fault_point('here'); print('alive', flush=True); fault_point('here')\n"
        "print('not reached')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "HYRAX_FAULT": "here:2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL and done.stdout == "alive\n", done
