"""Inference under torchrun: killed with SIGKILL, resumed, published once; the finish redone after a crash."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import lance
import numpy as np
import pytest

from hyrax.errors import ResultsError
from hyrax.results.store import ResultDataset
from tests.conftest import torchrun_command

OBJECTS = 1200
BAD = [i for i in range(OBJECTS) if i % 101 == 7]  # unreadable: skipped (data_set.on_bad_object = "skip")
GOOD = [i for i in range(OBJECTS) if i % 101 != 7]

DATASET = """
import os
import time

import numpy as np

from hyrax.datasets import HyraxDataset
from hyrax.errors import DataError

SLEEP = float(os.environ.get("DDP_INFER_SLEEP", "0"))


class CountingDataset(HyraxDataset):
    def __len__(self):
        return 1200

    def get_object_id(self, idx):
        return f"obj{idx:05d}"

    def get_flux(self, idx):
        if idx % 101 == 7:
            raise DataError(f"object {idx} is unreadable")
        time.sleep(SLEEP)
        return np.array([idx, 2 * idx, -idx], dtype=np.float32)
"""


def _setup(tmp_path: Path) -> tuple[Path, dict]:
    """A user dataset module, loopback weights and a config; the environment that finds the module."""
    (tmp_path / "ddp_infer_data.py").write_text(DATASET)
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
[data_set]
on_bad_object = "skip"
[data_request.infer.data]
dataset_class = "ddp_infer_data.CountingDataset"
"""
    )
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return config, {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _kill_a_rank_mid_run(tmp_path: Path, config: Path, env: dict) -> Path:
    """Start a 2-process inference, SIGKILL rank 1 once it has committed some chunks; the run dir."""
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(
            torchrun_command("infer", "-c", config),
            env={**env, "DDP_INFER_SLEEP": "0.005"},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline, killed = time.time() + 120, None
        while killed is None and time.time() < deadline and process.poll() is None:
            for manifest in (tmp_path / "results").glob("*-infer-*/lance_db/parts/rank-1.json"):
                state = json.loads(manifest.read_text())
                if state["rows"] >= 100 and not state["done"]:
                    os.kill(state["pid"], signal.SIGKILL)
                    killed = manifest.parents[2]
            time.sleep(0.02)
        assert killed is not None, (tmp_path / "killed.log").read_text()[-3000:]
        assert process.wait(timeout=60) != 0  # torchrun stops the other rank and fails
        return killed
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow  # ~30 s; the default suite's fault-injection tests kill single-process runs
def test_torchrun_inference_killed_with_sigkill_resumes_to_the_single_process_result(tmp_path, monkeypatch):
    config, env = _setup(tmp_path)
    run = _kill_a_rank_mid_run(tmp_path, config, env)
    table, parts = run / "lance_db" / "results.lance", run / "lance_db" / "parts"
    manifests = [json.loads((parts / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert not manifests[1]["done"] and 100 <= manifests[1]["rows"] <= len(GOOD) // 2
    committed = sum(manifest["rows"] for manifest in manifests)
    assert lance.dataset(str(table)).count_rows() == 0  # nothing published: no reader takes it as results
    with open(run / "hyrax_run.toml", "rb") as handle:
        assert tomllib.load(handle)["status"] != "complete"
    # A chunk written by a killed process before its manifest listed it: an orphan data file.
    from lance.fragment import write_fragments

    from hyrax.results.store import arrow_table

    schema = lance.dataset(str(table)).schema
    orphan = write_fragments(
        arrow_table(np.array(["orphan"]), np.zeros((1, 3), np.float32), schema), str(table)
    )
    orphan_file = table / "data" / orphan[0].files[0].path
    assert orphan_file.is_file()

    wrong = subprocess.run(
        torchrun_command("infer", "--resume", run, processes=3),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert wrong.returncode != 0
    assert "started by 2 processes" in wrong.stderr and "--nproc_per_node=2" in wrong.stderr, wrong.stderr[
        -3000:
    ]
    assert not (run / "infer_stats.toml").exists()

    resumed = subprocess.run(
        torchrun_command("infer", "--resume", run),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count(f"{len(GOOD)} results") == 1  # rank 0 reports, once

    results = ResultDataset(data_location=run)
    expected_ids = [f"obj{i:05d}" for i in GOOD]
    assert results.ids().tolist() == expected_ids  # every object once, in dataset order
    good = np.array(GOOD, dtype=np.float32)
    assert np.array_equal(results[np.arange(len(GOOD))], np.stack([good, 2 * good, -good], axis=1))

    monkeypatch.syspath_prepend(str(tmp_path))
    from hyrax import Hyrax

    h = Hyrax(config, setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "single"))
    single = h.infer()
    assert single.ids().tolist() == results.ids().tolist()
    assert np.array_equal(single[np.arange(len(single))], results[np.arange(len(results))])

    # No orphans: every data file of the table is one the final version reads; the parts are gone.
    final = lance.dataset(str(table))
    referenced = {data.path for fragment in final.get_fragments() for data in fragment.data_files()}
    assert {file.name for file in (table / "data").iterdir()} == referenced
    assert not orphan_file.exists()
    assert not parts.exists() and not list((run / "lance_db").glob(".parts-removed-*"))
    assert (run / "lance_db" / "results.ids.npy").is_file()  # the id index of the published table
    assert results.rows_of([expected_ids[-1], "nope"]).tolist() == [len(GOOD) - 1, -1]

    with open(run / "infer_stats.toml", "rb") as handle:
        stats = tomllib.load(handle)
    assert stats["objects_written"] == len(GOOD) and stats["skipped"] == len(BAD)
    assert stats["written_this_session"] == len(GOOD) - committed  # resumed, not redone
    with open(run / "hyrax_run.toml", "rb") as handle:
        status = tomllib.load(handle)
    assert status["status"] == "complete" and status["results"] == len(GOOD) and status["skipped"] == len(BAD)
    import pandas as pd

    skipped = pd.read_csv(run / "skipped_objects.csv")
    assert skipped["object_id"].tolist() == [f"obj{i:05d}" for i in BAD]
    assert skipped["row"].tolist() == BAD and skipped["reason"].str.contains("unreadable").all()


def _write_parts(run: Path) -> None:
    """Two finished shares of 50 objects each (5 chunks each), as two processes would leave them."""
    from hyrax.training.distributed_inference import PartWriter, _open_plan

    assert _open_plan(run, 2, 100, (3,), "float32") is not None
    for rank in (0, 1):
        part = PartWriter(run, rank, (3,), "float32", commit_seconds=0)
        for start in range(50 * rank, 50 * rank + 50, 10):
            values = np.arange(start, start + 10, dtype=np.float32)
            part.write(np.array([f"o{i:03d}" for i in values.astype(int)]), np.stack([values] * 3, 1), 0)
        part.finish(0)


def _published_ids(run: Path) -> list[str]:
    table = run / "lance_db" / "results.lance"
    final = lance.dataset(str(table))
    referenced = {data.path for fragment in final.get_fragments() for data in fragment.data_files()}
    assert {file.name for file in (table / "data").iterdir()} == referenced
    return ResultDataset(data_location=run).ids().tolist()


def test_the_finish_can_be_redone_after_a_crash_at_any_step(tmp_path):
    from hyrax.training.distributed_inference import _open_plan, check_processes, parts_path, publish_parts

    run = tmp_path / "run"
    run.mkdir()
    _write_parts(run)
    expected = [f"o{i:03d}" for i in range(100)]
    with pytest.raises(
        ResultsError, match=r"started by 2 processes.*--nproc_per_node=2 -m hyrax infer --resume"
    ):
        check_processes(run, 3)
    with pytest.raises(ResultsError, match=r"started by 2 processes.*this resume has 1"):
        check_processes(run, 1)  # a single-process resume would take the parts for stale files

    # Crash after the commit, before it was recorded: the same fragments are committed again.
    import lance
    from lance.fragment import FragmentMetadata

    parts = parts_path(run)
    fragments = [
        FragmentMetadata.from_json(json.dumps(fragment))
        for rank in (0, 1)
        for fragment in json.loads((parts / f"rank-{rank}.json").read_text())["fragments"]
    ]
    schema = lance.dataset(str(run / "lance_db" / "results.lance")).schema
    lance.LanceDataset.commit(
        str(run / "lance_db" / "results.lance"), lance.LanceOperation.Overwrite(schema, fragments)
    )
    saved = tmp_path / "parts-copy"
    shutil.copytree(parts, saved)
    summary = publish_parts(run, written_now=100, seconds=1.0)
    assert summary.results == 100 and _published_ids(run) == expected and not parts.exists()
    assert len(lance.dataset(str(run / "lance_db" / "results.lance")).get_fragments()) == 1  # compacted

    # Crash after everything but removing the parts (the commit recorded): the rest is redone.
    shutil.copytree(saved, parts)
    plan = json.loads((parts / "plan.json").read_text())
    (parts / "plan.json").write_text(json.dumps({**plan, "committed": True}))
    assert publish_parts(run).results == 100 and _published_ids(run) == expected and not parts.exists()

    # Crash while deleting the removed parts: a resume finds the table published and tidies up.
    (run / "lance_db" / ".parts-removed-1234").mkdir()
    assert _open_plan(run, 2, 100, (3,), "float32") is None
    assert not (run / "lance_db" / ".parts-removed-1234").exists()
    assert publish_parts(run).results == 100 and _published_ids(run) == expected
    with open(run / "infer_stats.toml", "rb") as handle:
        assert tomllib.load(handle)["objects_written"] == 100
