"""Which verbs run under several processes (training/distributed.py), with torchrun's or Slurm's
variables set by hand as the launchers set them. The runs across processes themselves are slow tests:
tests/training/test_multinode_train.py (train, train --resume; torchrun nodes and srun tasks),
tests/results/test_multinode_infer.py (infer, infer --resume)."""

from __future__ import annotations

import re

import pytest

from hyrax.errors import ConfigError

SRUN_TASK = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NTASKS": "2"}
TORCHRUN_PROCESS = {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}


@pytest.fixture
def hyrax(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    return h


@pytest.mark.parametrize(
    "launcher, words",
    [(SRUN_TASK, r"srun \(SLURM_NTASKS=2\)"), (TORCHRUN_PROCESS, r"torchrun \(WORLD_SIZE=2\)")],
)
@pytest.mark.parametrize("verb", ["engine", "test"])
def test_one_process_verbs_refuse_to_run_as_one_of_several(
    hyrax, monkeypatch, tmp_path, launcher, words, verb
):
    """engine and test run in one process: under srun -n 2 or torchrun each process would make its own
    run directory and redo the whole work. They refuse before anything is read or written."""
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        getattr(hyrax, verb)()
    message = str(error.value)
    assert f"hyrax {verb} runs in one process" in message
    assert re.search(words, message), message
    assert f"srun --ntasks=1 hyrax {verb}" in message and "without torchrun" in message
    assert not (tmp_path / "results").exists()  # no run directory was made


def test_one_task_of_slurm_runs_as_before(hyrax, monkeypatch):
    """A job of one task (SLURM_NTASKS=1) is one process: nothing is refused or changed."""
    from hyrax.training.distributed import launched_distributed, refuse_several_processes

    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not launched_distributed()
    refuse_several_processes("engine")
