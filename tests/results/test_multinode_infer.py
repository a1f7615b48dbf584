"""Inference across "nodes" on one machine: two torchrun launchers joined by a c10d rendezvous on
127.0.0.1, a node killed with SIGKILL and its share resumed, and Slurm's variables set by hand.

The torchrun and srun-like tests start several Python processes each (~30-90 s on two shared cores):
``python -m pytest tests/results/test_multinode_infer.py -m slow -p no:cacheprovider``.
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

import numpy as np
import pytest

from tests.conftest import wait_nodes

OBJECTS = 600

DATASET = """
import os
import time

import numpy as np

from hyrax.datasets import HyraxDataset

SLEEP = float(os.environ.get("MULTINODE_SLEEP", "0"))
READS = os.environ.get("MULTINODE_READS")


class ReadCountingDataset(HyraxDataset):
    '''Every object read is appended to READS/<pid>.txt: the evidence of what a run computed.'''

    def __len__(self):
        return 600

    def get_object_id(self, idx):
        return f"obj{idx:05d}"

    def get_flux(self, idx):
        if READS:
            with open(os.path.join(READS, f"{os.getpid()}.txt"), "a") as handle:
                handle.write(f"{idx}\\n")
        time.sleep(SLEEP)
        return np.array([idx, 2 * idx, -idx], dtype=np.float32)
"""


def _setup(tmp_path: Path) -> tuple[Path, dict]:
    """The dataset module, loopback weights, a config; the environment that finds the module."""
    (tmp_path / "multinode_data.py").write_text(DATASET)
    from hyrax.config import ConfigManager
    from hyrax.models.loopback import HyraxLoopback

    HyraxLoopback(ConfigManager().config).save(tmp_path / "w.pth")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[general]
results_dir = "{tmp_path / "results"}"
[model]
name = "HyraxLoopback"
[infer]
model_weights_file = "{tmp_path / "w.pth"}"
commit_seconds = 0.1
[data_loader]
batch_size = 16
num_workers = 0
[data_request.infer.data]
dataset_class = "multinode_data.ReadCountingDataset"
"""
    )
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return config, {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_command(port: int, *args) -> list[str]:
    """One "node": a torchrun launcher of one process, meeting the other at a c10d rendezvous."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=multinode-test",
        "-m",
        "hyrax",
        *map(str, args),
    ]


def _start_nodes(tmp_path: Path, env: dict, name: str, *args) -> list[subprocess.Popen]:
    port, nodes = _free_port(), []
    for node in (0, 1):
        with open(tmp_path / f"{name}-node{node}.log", "w") as log:
            nodes.append(
                subprocess.Popen(
                    _node_command(port, *args),
                    env=env,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the whole "node" can be killed
                )
            )
    return nodes


def _logs(tmp_path: Path, name: str) -> str:
    return "\n".join((tmp_path / f"{name}-node{n}.log").read_text()[-3000:] for n in (0, 1))


#: Every process reads object 0 twice before its share: the model contract check and the output shape probe.
PROBES = [0, 0]


def _reads(folder: Path) -> dict[str, list[int]]:
    """The objects each process (by pid) read for its share, in order, repeats kept; its probes checked
    and left out."""
    reads = {}
    for file in folder.glob("*.txt"):
        objects = [int(line) for line in file.read_text().split()]
        assert objects[: len(PROBES)] == PROBES, objects[:10]
        reads[file.stem] = objects[len(PROBES) :]
    return reads


def _single_process(tmp_path: Path, config: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("MULTINODE_READS", raising=False)
    from hyrax import Hyrax

    h = Hyrax(config, setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "single"))
    return h.infer()


def _assert_equal_to_one_process(run: Path, single) -> None:
    from hyrax.results.store import ResultDataset

    results = ResultDataset(data_location=run)
    expected = [f"obj{i:05d}" for i in range(OBJECTS)]
    assert results.ids().tolist() == expected  # every object once, in dataset order
    assert single.ids().tolist() == expected
    assert np.array_equal(results[np.arange(OBJECTS)], single[np.arange(OBJECTS)])


def _run_of(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "results").glob("*-infer-*")
    return run


@pytest.mark.slow
def test_two_torchrun_nodes_give_the_one_process_result(tmp_path, monkeypatch):
    config, env = _setup(tmp_path)
    reads = tmp_path / "reads"
    reads.mkdir()
    nodes = _start_nodes(tmp_path, {**env, "MULTINODE_READS": str(reads)}, "run", "infer", "-c", config)
    assert wait_nodes(nodes, 240) == [0, 0], _logs(tmp_path, "run")
    run = _run_of(tmp_path)
    per_process = _reads(reads)
    assert len(per_process) == 2  # two processes, one per node
    halves = sorted(per_process.values())
    # Each node read one contiguous half, each object once: no share taken twice.
    assert halves == [list(range(OBJECTS // 2)), list(range(OBJECTS // 2, OBJECTS))]
    _assert_equal_to_one_process(run, _single_process(tmp_path, config, monkeypatch))


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


def _kill_the_node_of_rank_1(tmp_path: Path, nodes: list[subprocess.Popen]) -> Path:
    """SIGKILL every process of the launcher whose worker is rank 1, once rank 1 committed some chunks."""
    deadline = time.time() + 180
    while time.time() < deadline and all(node.poll() is None for node in nodes):
        for manifest in (tmp_path / "results").glob("*-infer-*/lance_db/parts/rank-1.json"):
            state = json.loads(manifest.read_text())
            if state["rows"] >= 64 and not state["done"]:
                # The node: torchrun starts its worker in a session of its own, so the launcher's process
                # group (the node's) and the worker's are both killed.
                launcher = _parent(state["pid"])
                assert launcher in {node.pid for node in nodes}
                for group in (launcher, os.getpgid(state["pid"])):
                    os.killpg(group, signal.SIGKILL)
                return manifest.parents[2]
        time.sleep(0.02)
    raise AssertionError(_logs(tmp_path, "killed"))


@pytest.mark.slow
def test_a_killed_node_resumes_only_its_missing_share(tmp_path, monkeypatch):
    config, env = _setup(tmp_path)
    before, after = tmp_path / "reads-before", tmp_path / "reads-resume"
    before.mkdir(), after.mkdir()
    slow = {**env, "MULTINODE_READS": str(before), "MULTINODE_SLEEP": "0.01"}
    nodes = _start_nodes(tmp_path, slow, "killed", "infer", "-c", config)
    run = _kill_the_node_of_rank_1(tmp_path, nodes)
    codes = wait_nodes(nodes, 120)
    assert codes[0] != 0 or codes[1] != 0, _logs(tmp_path, "killed")  # the surviving node fails, not hangs

    # What each rank had committed, from disk: rank r's share is a contiguous half, committed in order.
    parts = run / "lance_db" / "parts"
    manifests = [json.loads((parts / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert not manifests[1]["done"] and 64 <= manifests[1]["rows"] < OBJECTS // 2
    committed = {rank * OBJECTS // 2 + i for rank in (0, 1) for i in range(manifests[rank]["rows"])}
    assert manifests[1]["last_object_id"] == f"obj{OBJECTS // 2 + manifests[1]['rows'] - 1:05d}"

    # A single process cannot take over a two-process run: each share belongs to its rank.
    from tests.conftest import run_hyrax

    alone = run_hyrax("infer", "--resume", run, cwd=tmp_path, env=env)
    assert alone.returncode != 0 and "started by 2 processes" in alone.stderr, alone.stderr[-2000:]

    nodes = _start_nodes(
        tmp_path, {**env, "MULTINODE_READS": str(after)}, "resumed", "infer", "--resume", run
    )
    assert wait_nodes(nodes, 240) == [0, 0], _logs(tmp_path, "resumed")
    resumed = _reads(after)
    assert len(resumed) == 2
    redone = [i for objects in resumed.values() for i in objects]
    # The resume computed exactly the objects no manifest listed, each once: nothing committed again.
    assert sorted(redone) == sorted(set(range(OBJECTS)) - committed)
    assert not committed & set(redone)

    import tomllib

    with open(run / "infer_stats.toml", "rb") as handle:
        stats = tomllib.load(handle)
    assert stats["objects_written"] == OBJECTS and stats["written_this_session"] == len(redone)
    _assert_equal_to_one_process(run, _single_process(tmp_path, config, monkeypatch))


# Slurm: srun starts each task itself; the variables are set here by hand as srun sets them.

SLURM_TASK = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "2",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_JOB_NODELIST": "127.0.0.1",
}


def test_slurm_variables_become_torch_variables():
    from hyrax.training.slurm import torch_variables

    task = {**SLURM_TASK, "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "cn[07-08]"}
    assert torch_variables(task) == {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "cn07",  # task 0 runs on the first host
        "MASTER_PORT": "19242",  # 15000 + the job id's last four digits: the same in every task
    }
    given = torch_variables({**task, "MASTER_ADDR": "head.example", "MASTER_PORT": "29500"})
    assert (given["MASTER_ADDR"], given["MASTER_PORT"]) == ("head.example", "29500")
    assert torch_variables({**task, "SLURM_JOB_ID": "1234567"})["MASTER_PORT"] == "19567"
    # torchrun (or the user) said which process this is; one task; not started by srun: nothing to do.
    assert torch_variables({**task, "TORCHELASTIC_RUN_ID": "x", "RANK": "5"}) == {}
    assert torch_variables({**task, "SLURM_NTASKS": "1"}) == {}
    assert torch_variables({k: v for k, v in task.items() if k != "SLURM_PROCID"}) == {}


def test_slurm_node_lists_expand_as_scontrol_does():
    from hyrax.errors import ConfigError
    from hyrax.training.slurm import expand_nodelist

    assert expand_nodelist("node1") == ["node1"]
    assert expand_nodelist("127.0.0.1") == ["127.0.0.1"]
    assert expand_nodelist("gpu[009-011,020],login2") == ["gpu009", "gpu010", "gpu011", "gpu020", "login2"]
    assert expand_nodelist("r[1-2]n[3,5]") == ["r1n3", "r1n5", "r2n3", "r2n5"]
    with pytest.raises(ConfigError, match=r"SLURM_JOB_NODELIST='cn\[a-b\]'.*range 'a-b'"):
        expand_nodelist("cn[a-b]")


def test_slurm_without_a_master_says_what_to_export():
    from hyrax.errors import ConfigError
    from hyrax.training.slurm import apply

    bare = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    with pytest.raises(ConfigError, match="export MASTER_ADDR"):
        apply(dict(bare))
    with pytest.raises(ConfigError, match="export MASTER_PORT"):
        apply({**bare, "SLURM_JOB_NODELIST": "cn1"})
    environ = {**bare, "MASTER_ADDR": "cn1", "MASTER_PORT": "29500"}
    assert apply(environ)["RANK"] == "0" and environ["WORLD_SIZE"] == "2" and environ["LOCAL_RANK"] == "0"


@pytest.mark.slow
def test_srun_tasks_infer_as_one_process_does(tmp_path, monkeypatch):
    """`srun --ntasks=2 hyrax infer -c config`, without torchrun: two processes with Slurm's variables."""
    config, env = _setup(tmp_path)
    reads = tmp_path / "reads"
    reads.mkdir()
    port, tasks = _free_port(), []
    for rank in (0, 1):
        task = {**env, **SLURM_TASK, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
        task.update(MASTER_PORT=str(port), MULTINODE_READS=str(reads))
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "TORCHELASTIC_RUN_ID"):
            task.pop(name, None)
        with open(tmp_path / f"srun-node{rank}.log", "w") as log:
            tasks.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hyrax", "infer", "-c", str(config)],
                    env=task,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    assert wait_nodes(tasks, 240) == [0, 0], _logs(tmp_path, "srun")
    assert sorted(_reads(reads).values()) == [list(range(OBJECTS // 2)), list(range(OBJECTS // 2, OBJECTS))]
    # One run: rank 0 made the run directory and reports; the other task only worked.
    assert f"{OBJECTS} results of shape (3,)" in (tmp_path / "srun-node0.log").read_text()
    assert "results of shape" not in (tmp_path / "srun-node1.log").read_text()
    _assert_equal_to_one_process(_run_of(tmp_path), _single_process(tmp_path, config, monkeypatch))


def test_each_process_of_a_node_infers_on_its_own_gpu(monkeypatch):
    import torch

    from hyrax.training.inference import inference_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert inference_device() == torch.device("cuda", 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # srun --gpus-per-task=1: only its own
    assert inference_device() == torch.device("cuda", 0)
    monkeypatch.delenv("LOCAL_RANK")
    assert inference_device() == torch.device("cuda", 0)
