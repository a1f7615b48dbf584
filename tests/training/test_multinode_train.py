"""Training across "nodes" on one machine: two torchrun launchers (``--nnodes=2 --nproc_per_node=1``)
joined by a c10d rendezvous on 127.0.0.1, against one process on the same global batch and seed; one
writer (rank 0); a node killed with SIGKILL mid-epoch and the run resumed by both nodes.

Every test starts several Python processes (~1-3 min each on two shared cores):
``python -m pytest tests/training/test_multinode_train.py -m slow -p no:cacheprovider``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import wait_nodes
from tests.training.test_ddp import assert_equal_weights, runs, write_config

pytestmark = pytest.mark.slow

#: A random dataset whose reads take time (MULTINODE_SLEEP seconds each), so that a kill lands inside an
#: epoch; each training process writes its launcher's pid and its own process group (torchrun starts
#: each worker in a session of its own) under MULTINODE_NODES/rank-<r>: together, its node.
DATASET = """
import os
import time

from hyrax.datasets.random import HyraxRandomDataset

SLEEP = float(os.environ.get("MULTINODE_SLEEP", "0"))
NODES = os.environ.get("MULTINODE_NODES")


class SlowRandomDataset(HyraxRandomDataset):
    def __init__(self, config, data_location=None):
        super().__init__(config, data_location)
        if NODES and "RANK" in os.environ:
            with open(os.path.join(NODES, f"rank-{os.environ['RANK']}"), "w") as handle:
                handle.write(f"{os.getppid()} {os.getpgrp()}")  # its launcher; its own group

    def get_image(self, idx):
        time.sleep(SLEEP)
        return super().get_image(idx)
"""

#: Every process of a node records what it creates, renames, removes or opens for writing under the
#: results directory (Python's audit events), in WRITES/<RANK or launcher-pid>.jsonl: the one-writer check.
AUDIT = """
import json
import os
import sys

_ROOT = os.environ.get("MULTINODE_RESULTS")
_LOG = os.environ.get("MULTINODE_WRITES")
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_EVENTS = {"open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link"}


def _hook(event, args):
    if event not in _EVENTS or not args or not isinstance(args[0], (str, os.PathLike)):
        return
    # a rename is recorded by its destination (checkpoints are written to a temporary name first)
    target = args[1] if event == "os.rename" and isinstance(args[1], (str, os.PathLike)) else args[0]
    path = os.path.abspath(os.fspath(target))
    if not path.startswith(_ROOT):
        return
    if event == "open":
        mode, flags = args[1], args[2]
        if not ((mode and any(c in mode for c in "wax+")) or (flags and flags & _WRITING)):
            return
    who = os.environ.get("RANK", f"launcher-{os.getpid()}")
    with open(os.path.join(_LOG, f"{who}.jsonl"), "a") as handle:  # outside _ROOT: not recorded
        handle.write(json.dumps([event, path]) + "\\n")


if _ROOT and _LOG:
    sys.addaudithook(_hook)
"""


def _prepare(tmp_path: Path, batch_size: int) -> tuple[Path, dict]:
    (tmp_path / "multinode_train_data.py").write_text(DATASET)
    audit = tmp_path / "audit"
    audit.mkdir(exist_ok=True)
    (audit / "sitecustomize.py").write_text(AUDIT)
    config = write_config(tmp_path, "HyraxAutoencoder", 3, batch_size)
    text = config.read_text().replace('"HyraxRandomDataset"', '"multinode_train_data.SlowRandomDataset"')
    config.write_text(text)
    path = os.pathsep.join([str(tmp_path), str(audit), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    return config, env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_nodes(tmp_path: Path, env: dict, name: str, *args) -> list[subprocess.Popen]:
    """Two "nodes": torchrun launchers of one process each, meeting at a c10d rendezvous on 127.0.0.1;
    each in its own process group, so that a whole node can be killed."""
    port, nodes = _free_port(), []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
        command += ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={name}"]
        with open(tmp_path / f"{name}-node{node}.log", "w") as log:
            nodes.append(
                subprocess.Popen(
                    [*command, "-m", "hyrax", *map(str, args)],
                    env=env,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return nodes


def _logs(tmp_path: Path, name: str) -> str:
    return "\n".join((tmp_path / f"{name}-node{n}.log").read_text()[-3000:] for n in (0, 1))


def _resumed_after_epoch_1(tmp_path: Path, name: str, run: Path) -> bool:
    """Both processes said they continue from epoch 1's checkpoint (training/loop.py logs it)."""
    said = f"resuming from {run / 'checkpoint_epoch_1.pt'} after epoch 1"
    return all(said in (tmp_path / f"{name}-node{n}.log").read_text() for n in (0, 1))


def _weights(run: Path) -> dict:
    state = torch.load(run / "example_model.pth", weights_only=True)
    return state.get("model", state) if isinstance(state, dict) else state


def _one_process(tmp_path: Path) -> dict:
    """One process, batches of 16 (the global batch of two processes of 8), the same seed."""
    config, env = _prepare(tmp_path, 16)
    before = runs(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "hyrax", "train", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs(tmp_path) - before
    return _weights(run)


def _writes(folder: Path) -> dict[str, list[tuple[str, str]]]:
    return {
        file.stem: [tuple(json.loads(line)) for line in file.read_text().splitlines()]
        for file in folder.glob("*.jsonl")
    }


def test_two_torchrun_nodes_train_as_one_process_with_rank_0_the_one_writer(tmp_path):
    alone = _one_process(tmp_path)
    config, env = _prepare(tmp_path, 8)
    writes = tmp_path / "writes"
    writes.mkdir()
    env.update(MULTINODE_RESULTS=str(tmp_path / "results"), MULTINODE_WRITES=str(writes))
    before = runs(tmp_path)
    nodes = _start_nodes(tmp_path, env, "train", "train", "-c", config)
    assert wait_nodes(nodes, 400) == [0, 0], _logs(tmp_path, "train")
    (run,) = runs(tmp_path) - before
    assert_equal_weights(alone, _weights(run))
    assert any(value.abs().sum() > 0 for value in alone.values())

    written = _writes(writes)
    # Rank 0 made the run directory and wrote its checkpoints, weights and status; rank 1 and the two
    # launchers wrote nothing under the results directory.
    assert set(written) == {"0"}, {who: paths[:5] for who, paths in written.items()}
    paths = {Path(path).name for _, path in written["0"]}
    assert {run.name, "checkpoint_epoch_3.pt", "example_model.pth", "hyrax_run.toml"} <= paths, paths
    assert sorted(p.name for p in run.glob("checkpoint_epoch_*.pt")) == ["checkpoint_epoch_3.pt"]
    # Both nodes ran the training (each prints where the run is), in the one directory rank 0 made.
    assert _logs(tmp_path, "train").count(f"weights and checkpoints: {run}") == 2


@pytest.mark.parametrize("killed_rank", [1, 0])
def test_a_node_killed_mid_epoch_resumes_on_both_nodes_to_the_uninterrupted_weights(tmp_path, killed_rank):
    """The node of ``killed_rank`` (its launcher's whole process group: launcher and worker) is killed
    with SIGKILL once epoch 1's checkpoint is on disk, inside epoch 2; the other node fails rather than
    hangs; both nodes relaunched with ``train --resume RUN`` end with the weights of one process trained
    uninterrupted on the same global batch and seed (which two uninterrupted nodes equal: the test
    above)."""
    alone = _one_process(tmp_path)
    config, env = _prepare(tmp_path, 8)
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    killed = {**env, "MULTINODE_SLEEP": "0.05", "MULTINODE_NODES": str(ranks)}
    before = runs(tmp_path)
    nodes = _start_nodes(tmp_path, killed, "killed", "train", "-c", config)
    deadline = time.time() + 300
    checkpoint = None
    while checkpoint is None and time.time() < deadline and all(node.poll() is None for node in nodes):
        found = [p for run in runs(tmp_path) - before for p in run.glob("checkpoint_epoch_1.pt")]
        checkpoint = found[0] if found else None
        time.sleep(0.01)
    assert checkpoint is not None, _logs(tmp_path, "killed")
    launcher, worker = map(int, (ranks / f"rank-{killed_rank}").read_text().split())
    assert launcher in {node.pid for node in nodes} and worker != launcher
    for group in (launcher, worker):  # the whole node: its launcher's process group, then its worker's
        os.killpg(group, signal.SIGKILL)
    codes = wait_nodes(nodes, 180)
    survivor = next(code for node, code in zip(nodes, codes, strict=True) if node.pid != launcher)
    assert survivor not in (0, None), _logs(tmp_path, "killed")  # failed, did not hang or finish

    run = checkpoint.parent
    # Killed inside epoch 2: epoch 1's checkpoint is the one on disk, no final weights.
    assert sorted(p.name for p in run.glob("checkpoint_epoch_*.pt")) == ["checkpoint_epoch_1.pt"]
    assert not (run / "example_model.pth").exists()

    nodes = _start_nodes(tmp_path, env, "resumed", "train", "--resume", run)
    assert wait_nodes(nodes, 400) == [0, 0], _logs(tmp_path, "resumed")
    # Continued from epoch 1's checkpoint, not trained again from the start (which, with the same seed,
    # would end with the same weights too).
    assert _resumed_after_epoch_1(tmp_path, "resumed", run)
    assert runs(tmp_path) - before == {run}  # continued in place: no new run directory
    assert sorted(p.name for p in run.glob("checkpoint_epoch_*.pt")) == ["checkpoint_epoch_3.pt"]
    assert_equal_weights(alone, _weights(run))


# Slurm: srun starts each task itself, no torchrun; the variables are set here by hand as srun sets them.


def _start_tasks(tmp_path: Path, env: dict, name: str, *args) -> list[subprocess.Popen]:
    """``srun --ntasks=2 hyrax ARGS`` on one node: two processes with Slurm's variables, nothing else."""
    port, tasks = _free_port(), []
    for rank in (0, 1):
        task = {**env, "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1"}
        task.update(SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_STEP_ID="0")
        # Hosts this machine cannot resolve, with rank 0's address and port exported by the batch script (as
        # docs/cli.md says, for a head node reached on another interface): both must be honoured. (Ignite's
        # own Slurm rule ignores MASTER_ADDR and MASTER_PORT given alone and takes the first host.)
        task.update(
            SLURM_JOB_NODELIST="hyrax-no-such-host[1-2]", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
        with open(tmp_path / f"{name}-node{rank}.log", "w") as log:
            tasks.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hyrax", *map(str, args)],
                    env=task,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return tasks


def test_srun_tasks_train_and_resume_as_one_process_does(tmp_path):
    """`srun --ntasks=2 hyrax train -c config` (2 x 8) ends as one process of 16; killed inside epoch 2
    (task 1 SIGKILLed, srun then ends task 0), `srun --ntasks=2 hyrax train --resume RUN` ends the same."""
    alone = _one_process(tmp_path)
    config, env = _prepare(tmp_path, 8)
    before = runs(tmp_path)
    tasks = _start_tasks(tmp_path, env, "srun", "train", "-c", config)
    assert wait_nodes(tasks, 400) == [0, 0], _logs(tmp_path, "srun")
    (run,) = runs(tmp_path) - before
    assert_equal_weights(alone, _weights(run))
    # One run: rank 0 made the directory (the other task was told where it is).
    assert _logs(tmp_path, "srun").count(f"weights and checkpoints: {run}") == 2

    before = runs(tmp_path)
    tasks = _start_tasks(tmp_path, {**env, "MULTINODE_SLEEP": "0.05"}, "srun-killed", "train", "-c", config)
    deadline, checkpoint = time.time() + 300, None
    while checkpoint is None and time.time() < deadline and all(task.poll() is None for task in tasks):
        found = [p for run in runs(tmp_path) - before for p in run.glob("checkpoint_epoch_1.pt")]
        checkpoint = found[0] if found else None
        time.sleep(0.01)
    assert checkpoint is not None, _logs(tmp_path, "srun-killed")
    os.killpg(tasks[1].pid, signal.SIGKILL)
    assert wait_nodes(tasks, 120)[0] not in (0, None), _logs(tmp_path, "srun-killed")  # task 0 fails, no hang
    run = checkpoint.parent
    assert sorted(p.name for p in run.glob("checkpoint_epoch_*.pt")) == ["checkpoint_epoch_1.pt"]
    assert not (run / "example_model.pth").exists()

    tasks = _start_tasks(tmp_path, env, "srun-resumed", "train", "--resume", run)
    assert wait_nodes(tasks, 300) == [0, 0], _logs(tmp_path, "srun-resumed")
    assert _resumed_after_epoch_1(tmp_path, "srun-resumed", run)
    assert runs(tmp_path) - before == {run}
    assert_equal_weights(alone, _weights(run))
