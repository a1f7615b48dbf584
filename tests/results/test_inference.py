"""infer, resume after kill -9, ResultDataset, lookup, ONNX export and engine, distributed inference."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import lance
import lancedb
import numpy as np
import pytest

from hyrax import Hyrax
from hyrax.errors import ConfigError, DataError, ResultsError, ResultsWriteError
from hyrax.models.model import WeightsError
from hyrax.results.store import ResultDataset, ResultWriter
from tests.conftest import run_hyrax, torchrun_hyrax

GALAXIES = {"dataset_class": "DecalsRingsDataset"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One quick autoencoder training on the galaxies, shared by the tests of this module."""
    results = tmp_path_factory.mktemp("trained") / "results"
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(results))
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("model.HyraxAutoencoder.latent_dim", 16)
    h.set_config("model.HyraxAutoencoder.base_channel_size", 8)
    h.set_config("data_request.train.data", GALAXIES)
    h.set_config("train.epochs", 1)
    h.set_config("data_loader.batch_size", 64)
    h.set_config("data_loader.num_workers", 0)
    model = h.train()
    return results, model.run_dir


def infer_hyrax(trained, **settings) -> Hyrax:
    results, _ = trained
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(results))
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("model.HyraxAutoencoder.latent_dim", 16)
    h.set_config("model.HyraxAutoencoder.base_channel_size", 8)
    h.set_config("data_request.infer.data", GALAXIES)
    h.set_config("data_loader.batch_size", 50)
    h.set_config("data_loader.num_workers", 0)
    for key, value in settings.items():
        h.set_config(key, value)
    return h


def test_infer_writes_every_object_in_dataset_order(trained):
    h = infer_hyrax(trained)
    results = h.infer()
    from hyrax.datasets.decals_rings import DecalsRingsDataset

    expected = DecalsRingsDataset(h.config).column("object_id")
    assert len(results) == 376 and results.ids().tolist() == expected.tolist()
    assert results.shape == (16,) and results[0].dtype == np.float32
    run = results.data_location
    with open(run / "hyrax_run.toml", "rb") as handle:
        assert tomllib.load(handle)["status"] == "complete"
    # The layout plain LanceDB and pylance read.
    table = lancedb.connect(run / "lance_db").open_table("results").to_arrow()
    assert table.column_names == ["object_id", "data"] and table.num_rows == 376
    dataset = lance.dataset(str(run / "lance_db" / "results.lance"))
    # The published schema metadata: 0.13's per column, and the one column's at the top (before 0.13).
    metadata = dict(dataset.schema.metadata)
    assert json.loads(metadata.pop(b"data")) == {"tensor_shape": [16], "tensor_dtype": "float32"}
    assert metadata == {b"tensor_shape": b"[16]", b"tensor_dtype": b"float32"}
    # The id index (sorted hash prefixes and rows, a .npy file beside the table): look-ups read no table scan.
    assert np.load(run / "lance_db" / "results.ids.npy", mmap_mode="r").shape == (376,)
    assert results.rows_of([expected[375], expected[0]]).tolist() == [375, 0]


def test_result_dataset_api(trained):
    results = infer_hyrax(trained).infer()
    ids = results.ids()
    assert results.get_object_id(5) == ids[5]
    assert np.array_equal(results.get_data(5), results[5])
    assert results[np.array([3, 1, 300])].shape == (3, 16)
    assert np.array_equal(results[2:5], results[np.array([2, 3, 4])]) and results[-2:].shape == (2, 16)
    assert np.array_equal(results[np.array([300])][0], results[300])
    assert np.array_equal(results.lookup(ids[300]), results[300])
    assert np.array_equal(results.lookup_many([ids[7], ids[2]]), results[np.array([7, 2])])
    assert sum(1 for _ in results) == 376
    frame = results.to_pandas()
    assert frame["object_id"].tolist() == ids.tolist() and np.array_equal(frame["data"][10], results[10])
    assert results.to_arrow().num_rows == 376
    with pytest.raises(DataError, match=r"Object id\(s\) NOPE are not in the results"):
        results.lookup("NOPE")


def test_results_join_back_with_a_catalog_through_data_request(trained, real_data):
    results = infer_hyrax(trained).infer()
    h = Hyrax(setup_logging=False)
    h.set_config(
        "data_request.train.vectors",
        {
            "dataset_class": "ResultDataset",
            "data_location": str(results.data_location),
            "primary_id_field": "object_id",
        },
    )
    h.set_config(
        "data_request.train.catalog",
        {
            "dataset_class": "HyraxCSVDataset",
            "join_field": "iauname",
            "data_location": str(real_data / "gz_decals_rings" / "catalog.csv"),
        },
    )
    provider = h.prepare()["train"]
    sample = provider[9]
    assert sample["catalog"]["iauname"] == sample["object_id"]
    assert np.array_equal(sample["vectors"]["data"], results[9])


def test_lookup_verb_api_and_cli(trained):
    h = infer_hyrax(trained)
    results = h.infer()
    first = results.ids()[0]
    assert np.array_equal(h.lookup(id=first), results[0])
    config = results.data_location / "runtime_config.toml"
    ok = run_hyrax("lookup", "-i", first, "-c", str(config), timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip().startswith("[")
    missing = run_hyrax("lookup", "-i", "NOPE", "-r", str(results.data_location), timeout=120)
    assert missing.returncode == 1 and "NOPE are not in the results" in missing.stderr


def test_onnx_export_and_engine_match_infer(trained):
    h = infer_hyrax(trained)
    results = h.infer()
    onnx_run = h.to_onnx()
    assert (onnx_run / "model.onnx").is_file() and (onnx_run / "prepare_inputs.py").is_file()
    with open(onnx_run / "onnx_check.toml", "rb") as handle:
        check = tomllib.load(handle)
    assert check["agree"] and check["max_abs_difference"] <= check["tolerance"]
    engine = h.engine()
    assert engine.ids().tolist() == results.ids().tolist()
    rows = np.arange(len(results))
    assert np.abs(engine[rows] - results[rows]).max() <= h.config["onnx"]["tolerance"]


def test_published_loopback_onnx_engine_round_trip(tmp_path):
    """As the published test_engine: HyraxLoopback exported to ONNX takes any batch size, engine gives
    back each input unchanged (shape kept), found through the published verb arguments; an empty
    placeholder weights file (the published infer_stream example) is accepted by the identity."""
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", "HyraxLoopback")
    h.set_config("train.epochs", 1)
    h.set_config("data_set.HyraxRandomDataset.size", 20)
    h.set_config("data_set.HyraxRandomDataset.shape", [2, 3])
    random = {"dataset_class": "HyraxRandomDataset", "primary_id_field": "object_id"}
    h.set_config("data_request.train.data", {**random, "fields": ["image", "label"]})
    h.set_config("data_request.infer.data", {**random, "fields": ["image"]})
    h.set_config("data_loader.batch_size", 8)  # 20 objects: the last batch has 4
    train_run = h.train().run_dir
    onnx_run = h.to_onnx(input_model_directory=train_run)
    assert onnx_run.name.split("-")[2] == "onnx"
    engine = h.engine(model_directory=onnx_run)
    provider = h.prepare()["infer"]
    images = np.stack([provider[i]["data"]["image"] for i in range(len(provider))])
    assert engine.shape == (2, 3)
    np.testing.assert_allclose(engine[np.arange(20)], images, atol=1e-6)
    placeholder = tmp_path / "foo.bar"
    placeholder.write_bytes(b"")
    h.set_config("infer.model_weights_file", str(placeholder))
    with pytest.warns(UserWarning, match="placeholder"):
        assert len(h.infer()) == 20


def test_an_export_that_fixes_the_batch_size_is_refused(tmp_path):
    import torch

    from hyrax.models.onnx import OnnxError, export

    class FixedBatch(torch.nn.Module):
        def infer_batch(self, x):
            return x.reshape(len(x), -1)  # len() fixes the batch size when traced

    with pytest.raises(OnnxError, match=r"fixes the batch size to 4.*x.shape\[0\]"):
        export(FixedBatch(), np.zeros((4, 2, 3), np.float32), tmp_path)
    assert not (tmp_path / "model.onnx").exists()


def test_bad_input(trained, tmp_path):
    h = infer_hyrax(trained)
    with pytest.raises(ConfigError, match=r"\[data_request.infer\] .* is empty"):
        h.set_config("data_request.infer", {})
    h = infer_hyrax(trained)
    del h.config["data_request"]["infer"]
    h.set_config("data_request.train.data", GALAXIES)
    with pytest.raises(ConfigError, match=r"needs a \[data_request.infer\] group.*Groups: train"):
        h.infer()
    h = infer_hyrax(trained, **{"model.HyraxAutoencoder.latent_dim": 8})
    with pytest.raises(WeightsError, match=r"to_latent.weight \(model \(8, "):
        h.infer()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    h = infer_hyrax(
        trained,
        **{"general.results_dir": str(blocker / "results"), "infer.model_weights_file": str(trained[1])},
    )
    with pytest.raises(ResultsError, match="Cannot create a run directory"):
        h.infer()


def test_full_disk_is_a_clear_error_and_leaves_no_table(tmp_path):
    """A real write failure (the file-size limit stands in for a full disk) in a real process."""
    code = textwrap.dedent(
        f"""
        import resource, signal, numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        from hyrax.results.store import ResultWriter
        writer = ResultWriter(r"{tmp_path}", (64,), "float32")
        writer.write(np.arange(5000).astype(str), np.zeros((5000, 64), np.float32))
        writer.flush()
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (
        result.returncode != 0 and "ResultsWriteError" in result.stderr and "free disk space" in result.stderr
    )
    with pytest.raises(ResultsError, match="No results table"):
        ResultDataset(data_location=tmp_path)  # nothing half-written pretends to be a table
    writer = ResultWriter(tmp_path, (64,), "float32", resume=True)  # the stale files are cleared
    assert writer.committed == 0
    assert ResultsWriteError


SLOW_DATASET = """
import time
import numpy as np
from hyrax.datasets import HyraxDataset

class SlowDataset(HyraxDataset):
    def __len__(self):
        return 600

    def get_object_id(self, idx):
        return f"slow{idx:04d}"

    def get_flux(self, idx):
        time.sleep(0.004)
        return np.full(3, idx, dtype=np.float32)
"""


def _slow_setup(tmp_path):
    """(environment, config file) for a Loopback inference over a slow 600-object dataset."""
    (tmp_path / "slowdata.py").write_text(SLOW_DATASET)
    weights = tmp_path / "weights"
    weights.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    make_weights = (
        "import numpy as np, slowdata\n"
        "from hyrax.config import ConfigManager\nfrom hyrax.models.loopback import HyraxLoopback\n"
        f"HyraxLoopback(ConfigManager().config).save(r'{weights / 'w.pth'}')\n"
    )
    subprocess.run([sys.executable, "-c", make_weights], check=True, env=env, timeout=120)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[general]
results_dir = "{tmp_path / "results"}"
[model]
name = "HyraxLoopback"
[infer]
model_weights_file = "{weights / "w.pth"}"
commit_seconds = 0.2
[onnx]
input_model_directory = "{weights / "w.pth"}"
[data_loader]
batch_size = 20
num_workers = 0
[data_request.infer.data]
dataset_class = "slowdata.SlowDataset"
"""
    )
    return env, config


def _start_hyrax(*args, env):
    """``python -m hyrax ARGS`` started in the background (to be killed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "hyrax", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _first_commits(tmp_path, verb, process):
    """The results table of the run ``process`` writes, once it has committed a few times."""
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list((tmp_path / "results").glob(f"*-{verb}-*/lance_db/results.lance/_versions/*"))
        if len(found) >= 3:
            return found[0].parents[1]
        time.sleep(0.05)
    raise AssertionError(process.stderr.read().decode() if process.poll() is not None else "no commit seen")


@pytest.mark.parametrize("verb", ["infer", pytest.param("engine", marks=pytest.mark.slow)])
def test_resume_after_kill_9_yields_each_id_once_in_order(tmp_path, verb):
    """infer, and engine (the ONNX export through the same loop), killed mid-run and resumed."""
    env, config = _slow_setup(tmp_path)
    if verb == "engine":
        exported = run_hyrax("to_onnx", "-c", str(config), env=env, timeout=300)
        assert exported.returncode == 0, exported.stderr[-3000:]
    process = _start_hyrax(verb, "-c", str(config), env=env)
    table = _first_commits(tmp_path, verb, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    run = table.parents[1]
    partial = lance.dataset(str(table)).count_rows()
    assert 0 < partial < 600
    with open(run / "hyrax_run.toml", "rb") as handle:
        assert tomllib.load(handle)["status"] == "running"  # never taken as complete
    from hyrax.results.run_dir import find_latest_run

    assert find_latest_run(tmp_path / "results", verb) is None
    resumed = run_hyrax(verb, "--resume", str(run), env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    results = ResultDataset(data_location=run)
    assert results.ids().tolist() == [f"slow{i:04d}" for i in range(600)]
    assert np.array_equal(results[np.arange(600)][:, 0], np.arange(600, dtype=np.float32))
    assert find_latest_run(tmp_path / "results", verb) == run
    with open(run / "infer_stats.toml", "rb") as handle:
        stats = tomllib.load(handle)
    # The whole run's counts, the killed session's rows included (issue 15).
    assert stats["objects_written"] == 600 and stats["written_before_this_session"] == partial
    assert stats["written_before_this_session"] + stats["written_this_session"] == 600


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_one_writer_per_run(tmp_path):
    """A second infer --resume while the run is being written is refused, naming the writer; the
    kernel frees the lock when the writer is killed; a finished run's status never changes (issue 15)."""
    from hyrax.errors import ResultsError
    from hyrax.results.run_dir import RunDir

    env, config = _slow_setup(tmp_path)
    writer = _start_hyrax("infer", "-c", str(config), env=env)
    run = _first_commits(tmp_path, "infer", writer).parents[1]
    second = run_hyrax("infer", "--resume", str(run), env=env, timeout=300)
    assert second.returncode != 0 and f"is being written by pid {writer.pid} (infer" in second.stderr
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    # Readers refuse the unfinished run unless asked (it used to be read as if complete).
    with pytest.raises(ResultsError, match=r"is a running run, not a complete one.*allow_unfinished"):
        ResultDataset(data_location=run)
    h = Hyrax(setup_logging=False)
    h.set_config("data_request.infer.previous", {"dataset_class": "ResultDataset", "data_location": str(run)})
    with pytest.raises(ResultsError, match="is a running run"):
        h.prepare()
    h.set_config("data_set.ResultDataset.allow_unfinished", True)
    assert 0 < len(h.prepare()["infer"]) < 600  # what it has, knowingly
    resumed = run_hyrax("infer", "--resume", str(run), env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ResultDataset(data_location=run).ids().tolist() == [f"slow{i:04d}" for i in range(600)]
    finished = RunDir(run)
    finished.mark_failed("a late loser of a race")
    assert finished.is_complete
    with pytest.raises(ResultsError, match="a finished run's status does not change"):
        finished.mark_running()


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_resume_uses_the_weights_the_run_started_with(tmp_path):
    """A resume reuses exactly the weights the run started with, and refuses if that file changed
    (it used to take the newest train run's: first rows from one model, the rest from another)."""
    env, config = _slow_setup(tmp_path)
    writer = _start_hyrax("infer", "-c", str(config), env=env)
    run = _first_commits(tmp_path, "infer", writer).parents[1]
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    with open(run / "inputs.toml", "rb") as handle:
        pins = tomllib.load(handle)
    assert pins["objects"] == 600 and pins["first_id"] == "slow0000" and pins["last_id"] == "slow0599"
    weights = Path(pins["weights"])
    import torch

    original = weights.read_bytes()
    state = torch.load(weights, weights_only=True)
    torch.save({k: v * 2 for k, v in state.items()}, weights)  # another model in the same file
    refused = run_hyrax("infer", "--resume", str(run), env=env, timeout=300)
    assert (
        refused.returncode != 0
        and "the weights" in refused.stderr
        and "changed since the run started" in refused.stderr
    )
    weights.write_bytes(original)  # the original file back: the resume goes on
    resumed = run_hyrax("infer", "--resume", str(run), env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_two_process_inference_equals_single_process(trained, tmp_path):
    results_dir, train_run = trained
    single = infer_hyrax(
        trained,
        **{"general.results_dir": str(tmp_path / "single"), "infer.model_weights_file": str(train_run)},
    ).infer()
    config = tmp_path / "config.toml"
    h = infer_hyrax(
        trained,
        **{
            "general.results_dir": str(tmp_path / "ddp"),
            "infer.model_weights_file": str(train_run),
            "general.distributed": True,
        },
    )
    import tomlkit

    from hyrax.config import to_plain

    config.write_text(tomlkit.dumps(to_plain(h.config)))
    result = torchrun_hyrax("infer", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "ddp").glob("*-infer-*"))
    assert len(runs) == 1
    both = ResultDataset(data_location=runs[0])
    assert both.ids().tolist() == single.ids().tolist()
    rows = np.arange(len(single))
    assert np.allclose(both[rows], single[rows], atol=1e-5)


def test_onnx_export_is_of_the_model_in_eval_mode(tmp_path):
    """Dropout and batch norm export as they infer (eval mode), so ONNX and torch agree."""
    from torch import nn

    from hyrax.models import hyrax_model
    from hyrax.plugins import MODELS

    @hyrax_model
    class Dropping(nn.Module):
        def __init__(self, config, data_sample=None):
            super().__init__()
            self.layers = nn.Sequential(nn.Flatten(), nn.Linear(50, 16), nn.BatchNorm1d(16), nn.Dropout(0.9))

        @staticmethod
        def prepare_inputs(batch):
            return batch["data"]["image"].astype(np.float32)

        def forward(self, x):
            return self.layers(x)

        def train_batch(self, x):
            self.optimizer.zero_grad()
            loss = self(x).pow(2).mean()
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.item()}

        def infer_batch(self, x):
            return self(x)

    try:
        h = Hyrax(setup_logging=False)
        h.set_config("general.results_dir", str(tmp_path / "results"))
        h.set_config("model.name", "Dropping")
        h.set_config("train.epochs", 1)
        h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
        h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
        h.train()
        with open(h.to_onnx() / "onnx_check.toml", "rb") as handle:
            check = tomllib.load(handle)
        assert check["agree"] and check["max_abs_difference"] < 1e-4
    finally:
        MODELS.unregister("Dropping")


def test_non_finite_model_outputs_never_reach_the_table(tmp_path):
    """A model giving NaN for some objects: an error naming them (nothing of that batch written), or with
    on_bad_object = "skip" those objects recorded as skipped and the rest written (issue 15)."""
    import torch
    from torch import nn

    from hyrax.models import hyrax_model
    from hyrax.plugins import MODELS

    @hyrax_model
    class SometimesNaN(nn.Module):
        def __init__(self, config, data_sample=None):
            super().__init__()
            self.unit = nn.Parameter(torch.ones(1))

        @staticmethod
        def prepare_inputs(batch):
            return batch["data"]["image"].astype(np.float32).reshape(len(batch["data"]["image"]), -1)

        def train_batch(self, x):
            return {"loss": 0.0}

        def infer_batch(self, x):
            out = x * self.unit
            return torch.where(x[:, :1] > 0.8, torch.full_like(out, float("nan")), out)

    try:
        h = Hyrax(setup_logging=False)
        h.set_config("general.results_dir", str(tmp_path / "results"))
        h.set_config("model.name", "SometimesNaN")
        h.set_config("train.epochs", 1)
        h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
        h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
        h.set_config("data_loader.batch_size", 10)
        h.train()
        with pytest.raises(
            DataError, match=r"output is not finite \(NaN or inf\) for \d+ object\(s\).*on_bad_object"
        ):
            h.infer()
        h.set_config("data_set.on_bad_object", "skip")
        results = h.infer()
        values = results[np.arange(len(results))]
        assert np.isfinite(values).all() and 0 < len(results) < 100
        skipped = (results.data_location / "skipped_objects.csv").read_text()
        assert skipped.count("model output not finite") == 100 - len(results)
    finally:
        MODELS.unregister("SometimesNaN")


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_dataloader_workers_die_with_a_killed_infer(tmp_path):
    """kill -9 of infer running DataLoader workers leaves no worker behind (one used to stay, blocked in
    a pipe write, holding its memory) (issue 15)."""
    import psutil

    env, config = _slow_setup(tmp_path)
    config.write_text(config.read_text().replace("num_workers = 0", "num_workers = 2"))
    # Each object also carries a 200 kB note: a batch travels through the worker's pipe, whose writer
    # blocks once nobody reads (the killed main process), where torch's own parent check never runs.
    (tmp_path / "slowdata.py").write_text(
        SLOW_DATASET + "\n    def get_note(self, idx):\n        return 'x' * 200_000\n"
    )
    writer = _start_hyrax("infer", "-c", str(config), env=env)
    _first_commits(tmp_path, "infer", writer)
    workers = psutil.Process(writer.pid).children(recursive=True)
    assert len(workers) >= 2
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, [p.pid for p in alive]


def test_repeated_ids_never_make_a_complete_run(tmp_path):
    """A dataset whose getter gives the same id twice: infer ends in an error naming the ids, and the run
    is not complete (it used to be, with those objects twice after a resume) (issue 15)."""
    from hyrax.datasets import HyraxDataset
    from hyrax.plugins import DATASETS
    from hyrax.results.run_dir import find_latest_run

    class Repeating(HyraxDataset):
        def __len__(self):
            return 100

        def get_object_id(self, idx):
            return f"obj{idx % 60}"

        def get_flux(self, idx):
            return np.full(3, idx, np.float32)

    try:
        h = Hyrax(setup_logging=False)
        h.set_config("general.results_dir", str(tmp_path / "results"))
        h.set_config("model.name", "HyraxLoopback")
        h.set_config("train.epochs", 1)
        h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
        h.train()
        h.set_config("data_request.infer.data", {"dataset_class": "Repeating"})
        with pytest.raises(DataError, match=r"40 object id\(s\) occur more than once .*e\.g\. obj0, obj1"):
            h.infer()
        assert find_latest_run(tmp_path / "results", "infer") is None
    finally:
        DATASETS.unregister("Repeating")
