"""Run directories: naming, the config snapshot, status, and finding the latest complete run."""

from __future__ import annotations

import re
import tomllib

import pytest

from hyrax.config import ConfigManager
from hyrax.errors import ResultsError
from hyrax.results.run_dir import RunDir, find_latest_run, resolve_run, runs_of


@pytest.fixture
def config(tmp_path):
    config = ConfigManager().config
    config["general"]["results_dir"] = str(tmp_path / "results")
    return config


def test_name_and_snapshot(config):
    with RunDir.create(config, "train") as run:
        pass
    assert re.fullmatch(r"\d{8}-\d{6}-train-[a-z0-9]{4}", run.path.name)
    with open(run.path / "runtime_config.toml", "rb") as handle:
        snapshot = tomllib.load(handle)
    assert snapshot == config  # the full resolved config, quoted class-path tables included
    assert run.status["status"] == "complete"
    assert {"started", "finished", "verb", "hyrax_version"} <= set(run.status)


def test_latest_is_the_newest_complete_run_of_that_verb(config):
    results = config["general"]["results_dir"]
    assert find_latest_run(results, "train") is None
    with RunDir.create(config, "train") as first:
        pass
    with RunDir.create(config, "train") as second:
        pass
    with RunDir.create(config, "infer"):
        pass
    assert find_latest_run(results, "train") == second.path
    assert [r.path for r in runs_of(results, "train")] == [first.path, second.path]


def test_unfinished_and_failed_runs_are_never_latest(config):
    results = config["general"]["results_dir"]
    with RunDir.create(config, "train") as complete:
        pass
    RunDir.create(config, "train")  # still "running": a crashed or ongoing run
    with pytest.raises(RuntimeError), RunDir.create(config, "train") as failed:
        raise RuntimeError("disk on fire")
    assert failed.status["status"] == "failed" and "disk on fire" in failed.status["error"]
    assert find_latest_run(results, "train") == complete.path
    assert len(runs_of(results, "train", complete_only=False)) == 3


def test_resolve_run_explicit_override_and_errors(config, tmp_path):
    with pytest.raises(ResultsError, match=r"No complete 'infer' run.*Run `hyrax infer`"):
        resolve_run(config, "infer")
    with RunDir.create(config, "infer") as run:
        pass
    assert resolve_run(config, "infer") == run.path
    other = RunDir.create(config, "infer")  # unfinished
    config["results"]["inference_dir"] = str(other.path)
    with pytest.raises(ResultsError, match="is running, not complete"):
        resolve_run(config, "infer")
    other.mark_complete()
    assert resolve_run(config, "infer") == other.path
    with pytest.raises(ResultsError, match="does not exist"):
        resolve_run(config, "infer", explicit=tmp_path / "nope")


def test_credentials_never_reach_the_snapshot(config):
    config["download"]["password"] = "hunter2"
    config["data_set"]["my_api_token"] = "tok-123"  # any secret-like key, not only the download's
    run = RunDir.create(config, "download")
    text = (run.path / "runtime_config.toml").read_text()
    assert "hunter2" not in text and "tok-123" not in text and 'password = "********"' in text


def test_secrets_are_masked_wherever_a_config_is_shown(tmp_path):
    """hyrax config -c FILE, h.config in a notebook and config_help never show a secret in clear."""
    from hyrax import Hyrax
    from tests.conftest import run_hyrax

    config = tmp_path / "config.toml"
    config.write_text('[download]\nusername = "astro"\npassword = "hunter2"\n')
    shown = run_hyrax("config", "-c", config)
    assert shown.returncode == 0 and "hunter2" not in shown.stdout and "********" in shown.stdout
    one = run_hyrax("config", "download.password", "-c", config)
    assert one.returncode == 0 and "hunter2" not in one.stdout
    h = Hyrax(config_file=config, setup_logging=False)
    assert "hunter2" not in repr(h.config) and "hunter2" not in repr(h.config["download"])
    assert "hunter2" not in h.config_help("download.password")
    assert h.config["download"]["password"] == "hunter2"  # the code that needs it still reads it
    # A run's snapshot used as a config says where the credentials must come from instead.
    from hyrax.download.credentials import load_credentials
    from hyrax.errors import ConfigError

    h.set_config("general.results_dir", str(tmp_path / "results"))
    run = RunDir.create(h.config, "download")
    with pytest.raises(ConfigError, match="hold the mask.*credentials_file"):
        load_credentials(Hyrax(config_file=run.path / "runtime_config.toml", setup_logging=False).config)


def test_unwritable_results_dir_is_a_clear_error(config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config["general"]["results_dir"] = str(blocker / "results")
    with pytest.raises(ResultsError, match="Cannot create a run directory in general.results_dir"):
        RunDir.create(config, "train")


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    """Splits, fitted reducers and index markers are written through write_*_atomic: a write that fails
    half-way leaves the previous file whole and no temporary file (issue 14)."""
    import os

    import numpy as np

    from hyrax.results import run_dir
    from hyrax.results.run_dir import write_npz_atomic

    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "train_split.npz"
    write_npz_atomic(path, indices=np.arange(5))

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_dir.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        write_npz_atomic(path, indices=np.arange(7))
    monkeypatch.setattr(run_dir.os, "replace", os.replace)
    assert np.load(path)["indices"].tolist() == [0, 1, 2, 3, 4]
    assert [p.name for p in folder.iterdir()] == ["train_split.npz"]


def test_a_checkpoint_holding_python_objects_is_refused(tmp_path):
    """Checkpoints are read as tensors and plain values only: one that would run code is refused (issue 14)."""
    import torch
    from torch import nn

    from hyrax.training.checkpoints import CheckpointError, load_checkpoint

    class Sneaky:
        def __reduce__(self):
            return (print, ("this would run at load time",))

    path = tmp_path / "checkpoint_epoch_1.pt"
    torch.save({"model": nn.Linear(1, 1).state_dict(), "epoch": 1, "extra": Sneaky()}, path)
    with pytest.raises(CheckpointError, match="tensors and plain values only"):
        load_checkpoint(path, nn.Linear(1, 1))
