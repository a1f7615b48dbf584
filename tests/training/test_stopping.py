"""Stopping a training and going on (issue 26, findings 8 and 9): Ctrl-C says what was saved and the exact
command that continues; `train --resume RUN_DIR` continues in place with the run's own config; a batch larger
than the train split is a warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from torch import nn

from hyrax.errors import ConfigError, ResultsError
from hyrax.models import hyrax_model
from hyrax.training.loop import BatchSizeWarning, TrainingInterrupted
from tests.training.test_training import make_hyrax
from tests.training.test_worker_errors import cli_logging  # noqa: F401 - a fixture


@hyrax_model
class CtrlCInEpochTwo(nn.Module):
    """A small regressor whose process receives SIGINT (a real signal, as Ctrl-C sends) in the first
    batch of epoch 2, once (30 training objects in batches of 10: call 4)."""

    calls = 0
    armed = True

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer = nn.Linear(192, 4)

    def forward(self, x):
        return self.layer(x.flatten(1))

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"]

    def train_batch(self, x):
        type(self).calls += 1
        if type(self).armed and type(self).calls == 4:
            type(self).armed = False
            signal.raise_signal(signal.SIGINT)
        self.optimizer.zero_grad()
        loss = self(x).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def validate_batch(self, x):
        return {"loss": self(x).pow(2).mean().item()}

    def infer_batch(self, x):
        return self(x)


def status(run: Path) -> dict:
    return tomllib.loads((run / "hyrax_run.toml").read_text())


def test_ctrl_c_says_what_was_saved_and_train_resume_continues_in_place(tmp_path):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C raises KeyboardInterrupt
    h = make_hyrax(tmp_path, model="CtrlCInEpochTwo", epochs=3)
    with pytest.raises(TrainingInterrupted) as stopped:
        h.train()
    run = next((tmp_path / "results").glob("*-train-*"))
    message = str(stopped.value)
    assert message.startswith("Training stopped during epoch 2 of 3. Epoch 1 is saved")
    assert str(run / "checkpoint_epoch_1.pt") in message
    assert message.endswith(f'hyrax train --resume {run} (in a notebook: h.train(resume="{run}"))')
    assert status(run)["status"] == "stopped"

    # A changed setting is refused by name; the same config (or none) continues to the configured epochs.
    with pytest.raises(ConfigError, match=r"train.epochs: the run started with 3, now 5"):
        make_hyrax(tmp_path, model="CtrlCInEpochTwo", epochs=5).train(resume=run)
    model = h.train(resume=str(run))
    assert model.run_dir == run and [e["epoch"] for e in model.training_history] == [2, 3]
    assert (run / "checkpoint_epoch_3.pt").is_file() and status(run)["status"] == "complete"
    assert sorted(p.name for p in (tmp_path / "results").glob("*-train-*")) == [run.name]  # no new run
    with pytest.raises(ResultsError, match="that training is complete"):
        h.train(resume=run)


def test_the_cli_prints_the_continue_instruction_and_exits_130(tmp_path, capsys, cli_logging):  # noqa: F811
    from hyrax.cli import main

    CtrlCInEpochTwo.calls, CtrlCInEpochTwo.armed = 0, True
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[general]
results_dir = "{tmp_path / "results"}"
[model]
name = "CtrlCInEpochTwo"
[data_set.HyraxRandomDataset]
shape = [3, 8, 8]
size = 30
[data_request.train.data]
dataset_class = "HyraxRandomDataset"
[train]
epochs = 2
[data_loader]
batch_size = 10
num_workers = 0
"""
    )
    assert main(["train", "-c", str(config)]) == 130
    run = next((tmp_path / "results").glob("*-train-*"))
    err = capsys.readouterr().err
    assert "hyrax train: interrupted. Training stopped during epoch 2 of 2. Epoch 1 is saved" in err
    assert f"Continue from epoch 2 with: hyrax train --resume {run} " in err
    assert "terminating due to exception" not in err
    assert main(["train", "--resume", str(run)]) == 0  # no -c: the run's own config
    assert status(run)["status"] == "complete" and (run / "checkpoint_epoch_2.pt").is_file()


def test_a_batch_larger_than_the_train_split_warns(tmp_path):
    h = make_hyrax(tmp_path, model="HyraxLoopback", epochs=1, data_loader__batch_size=512)
    with pytest.warns(BatchSizeWarning) as warned:
        h.train()
    warned = [w for w in warned if w.category is BatchSizeWarning]
    assert len(warned) == 1
    assert str(warned[0].message).startswith(
        "data_loader.batch_size = 512 is larger than the train split (30 objects): each epoch is 1 optimiser "
        "step(s)"
    )
    assert "Set data_loader.batch_size below 30, e.g. 2 (15 steps per epoch)" in str(warned[0].message)


SLEEPY_MODEL = """
import time
from torch import nn
from hyrax.models import hyrax_model


@hyrax_model
class Sleepy(nn.Module):
    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer = nn.Linear(192, 4)

    def forward(self, x):
        return self.layer(x.flatten(1))

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"]

    def train_batch(self, x):
        time.sleep(0.1)  # an epoch of 4 batches takes a little while: time for Ctrl-C to land in epoch 2
        self.optimizer.zero_grad()
        loss = self(x).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def infer_batch(self, x):
        return self(x)
"""


@pytest.mark.slow  # two real `hyrax train` processes (~30 s on 2 cores); the in-process tests above are fast
def test_sigint_to_a_real_hyrax_train_after_its_first_checkpoint_then_resume(tmp_path):
    work = tmp_path / "work"
    (work / "sleepy_model.py").write_text(SLEEPY_MODEL)  # `python -m hyrax` imports from its directory
    (work / "config.toml").write_text(
        """
[general]
results_dir = "./results"
[model]
name = "sleepy_model.Sleepy"
[data_set.HyraxRandomDataset]
shape = [3, 8, 8]
size = 40
[data_request.train.data]
dataset_class = "HyraxRandomDataset"
[train]
epochs = 4
[data_loader]
batch_size = 10
num_workers = 2
"""
    )
    command = [sys.executable, "-m", "hyrax", "train", "-c", "config.toml"]
    process = subprocess.Popen(  # its own process group, as a terminal's foreground job
        command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not list(work.glob("results/*-train-*/checkpoint_epoch_1.pt")):  # the first write
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.02)
        run = next(work.glob("results/*-train-*"))
        assert status(run)["status"] == "running"  # the signal lands after the first write, mid-run
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: to the whole group, DataLoader workers included
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "hyrax train: interrupted. Training stopped during epoch " in err
    assert "Continue from epoch " in err and f"with: hyrax train --resume {run.relative_to(work)} " in err
    assert "terminating due to exception" not in err and "Traceback" not in err
    stopped = status(run)
    assert stopped["status"] == "stopped" and not (run / "checkpoint_epoch_4.pt").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "hyrax", "train", "--resume", str(run.relative_to(work))],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "epoch 4/4" in resumed.stderr
    assert status(run)["status"] == "complete" and (run / "checkpoint_epoch_4.pt").is_file()


@pytest.mark.slow
def test_early_stopping_patience_below_one_is_refused_by_name(tmp_path):
    """Early stopping is Ignite's EarlyStopping, which needs a patience of 1 or more: 0 says so by key."""
    h = make_hyrax(tmp_path, model="HyraxLoopback", epochs=2, train__early_stopping_patience=0)
    with pytest.raises(ConfigError, match=r"train.early_stopping_patience = 0.*1 or more.*false"):
        h.train()
