"""The train verb: metrics, checkpoints, resume, fine-tuning, early stopping, tracking, bad input."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

from hyrax import Hyrax
from hyrax.errors import ConfigError
from hyrax.models import hyrax_model
from hyrax.models.model import WeightsError
from hyrax.plugins import MODELS
from hyrax.training.checkpoints import CheckpointError
from hyrax.training.loop import TrainingError
from tests.conftest import run_hyrax, torchrun_hyrax


def make_hyrax(
    tmp_path, model="HyraxAutoencoder", epochs=2, dataset="HyraxRandomDataset", **settings
) -> Hyrax:
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", model)
    h.set_config("data_set.HyraxRandomDataset.shape", [3, 8, 8])
    h.set_config("data_set.HyraxRandomDataset.size", 40)
    h.set_config("data_set.HyraxRandomDataset.provided_labels", [0, 1])
    for group in ("train", "validate"):
        h.set_config(f"data_request.{group}.data", {"dataset_class": dataset})
    h.set_config("split.train", 0.75)
    h.set_config("train.epochs", epochs)
    h.set_config("data_loader.batch_size", 10)
    h.set_config("data_loader.num_workers", 0)
    h.set_config("data_set.seed", 1)
    for key, value in settings.items():
        h.set_config(key.replace("__", "."), value)
    return h


@hyrax_model
class ScriptedLosses(nn.Module):
    """Validation losses follow SCRIPT, one value per epoch (one validation batch per epoch)."""

    SCRIPT = [3.0, 1.0, 2.0, 2.5, 2.6]

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer = nn.Linear(192, 2)
        self.validations = 0

    def forward(self, x):
        return self.layer(x.flatten(1))

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"]

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = self(x).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def validate_batch(self, x):
        loss = self.SCRIPT[self.validations]
        self.validations += 1
        return {"loss": loss}

    def infer_batch(self, x):
        return self(x)


def test_train_returns_model_with_epoch_mean_metrics(tmp_path):
    model = make_hyrax(tmp_path).train()
    # Ours, and the published names (final_validation_metrics["loss"] in its tuning notebook).
    assert set(model.final_training_metrics) == {"training_loss", "loss"}
    assert set(model.final_validation_metrics) == {"validation_loss", "loss"}
    assert model.final_validation_metrics["loss"] == model.final_validation_metrics["validation_loss"]
    run = model.run_dir
    for name in (
        "checkpoint_epoch_2.pt",
        "best_checkpoint.pt",
        "example_model.pth",
        "prepare_inputs.py",
        "train_split.npz",
        "validate_split.npz",
        "runtime_config.toml",
    ):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint_epoch_1.pt").exists()  # only the latest epoch is kept
    with open(run / "hyrax_run.toml", "rb") as handle:
        assert tomllib.load(handle)["status"] == "complete"


def test_best_checkpoint_follows_epoch_mean_validation_loss(tmp_path):
    h = make_hyrax(tmp_path, model="ScriptedLosses", epochs=3, data_loader__batch_size=40)
    model = h.train()
    best = torch.load(model.run_dir / "best_checkpoint.pt", weights_only=False)
    assert best["epoch"] == 2 and best["best_loss"] == 1.0
    assert model.final_validation_metrics == {"validation_loss": 2.0, "loss": 2.0}


def test_early_stopping(tmp_path):
    h = make_hyrax(
        tmp_path,
        model="ScriptedLosses",
        epochs=5,
        data_loader__batch_size=40,
        train__early_stopping_patience=2,
    )
    model = h.train()
    assert (model.run_dir / "checkpoint_epoch_4.pt").is_file()  # best at 2, no better at 3 and 4: stop
    assert not (model.run_dir / "checkpoint_epoch_5.pt").exists()


def test_resume_continues_epochs_and_scheduler(tmp_path):
    first = make_hyrax(tmp_path, epochs=2)
    first.set_config("scheduler.name", "torch.optim.lr_scheduler.ExponentialLR")
    first.set_config("'torch.optim.lr_scheduler.ExponentialLR'.gamma", 0.5)
    done = first.train()
    lr = 0.01  # the default optimizer's rate (torch.optim.SGD, as published)
    assert done.scheduler.get_last_lr()[0] == pytest.approx(lr * 0.5**2)
    second = make_hyrax(tmp_path, epochs=4, train__resume=str(done.run_dir))
    second.set_config("scheduler.name", "torch.optim.lr_scheduler.ExponentialLR")
    second.set_config("'torch.optim.lr_scheduler.ExponentialLR'.gamma", 0.5)
    resumed = second.train()
    assert (resumed.run_dir / "checkpoint_epoch_4.pt").is_file()
    assert not (resumed.run_dir / "checkpoint_epoch_2.pt").exists()
    assert resumed.scheduler.get_last_lr()[0] == pytest.approx(lr * 0.5**4)


def test_resume_splits_and_shuffles_with_the_seed_of_the_run_it_continues(tmp_path):
    """Issue 15: with data_set.seed unset each training draws a seed; a resume must reuse the continued
    run's (recorded in its checkpoints), or validation objects would move into training mid-run."""
    import numpy as np

    done = make_hyrax(tmp_path, epochs=2, data_set__seed=False).train()
    resumed = make_hyrax(tmp_path, epochs=3, data_set__seed=False, train__resume=str(done.run_dir)).train()
    for name in ("train_split.npz", "validate_split.npz"):
        assert np.array_equal(
            np.load(done.run_dir / name)["indices"], np.load(resumed.run_dir / name)["indices"]
        ), name
    first = tomllib.loads((done.run_dir / "split_config.toml").read_text())["seed"]
    assert tomllib.loads((resumed.run_dir / "split_config.toml").read_text())["seed"] == first
    other = make_hyrax(tmp_path, epochs=3, data_set__seed=first + 1, train__resume=str(done.run_dir))
    runs = sorted((tmp_path / "results").iterdir())
    with pytest.raises(ConfigError, match=rf"whose seed was {first}, but data_set.seed is {first + 1}"):
        other.train()
    assert sorted((tmp_path / "results").iterdir()) == runs  # refused before a run directory was made


def test_fine_tune_from_weights_and_conflicting_keys(tmp_path):
    base = make_hyrax(tmp_path, epochs=1).train()
    weights = base.run_dir / "example_model.pth"
    h = make_hyrax(
        tmp_path, epochs=1, train__model_weights_file=str(weights), **{"'torch.optim.SGD'.lr": 1e-12}
    )
    tuned = h.train()
    start = torch.load(weights, weights_only=True)
    for name, tensor in tuned.state_dict().items():
        assert torch.allclose(tensor, start[name], atol=1e-6), (
            name
        )  # lr ~ 0: the weights stayed the given ones
    h.set_config("train.resume", str(base.run_dir))
    with pytest.raises(ConfigError, match="train.resume and train.model_weights_file are both set"):
        h.train()


def test_resume_file_from_another_model(tmp_path):
    done = make_hyrax(tmp_path, epochs=1).train()
    h = make_hyrax(tmp_path, model="HyraxAutoencoderV2", train__resume=str(done.run_dir))
    with pytest.raises(
        CheckpointError, match=r"written by model HyraxAutoencoder, but model.name is HyraxAutoencoderV2"
    ):
        h.train()
    # A resume that cannot work leaves no failed run behind (issue 15).
    assert len(list((tmp_path / "results").glob("*-train-*"))) == 1
    h = make_hyrax(tmp_path, train__resume=str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="does not exist"):
        h.train()
    assert len(list((tmp_path / "results").glob("*-train-*"))) == 1


def test_weights_that_do_not_fit(tmp_path):
    done = make_hyrax(tmp_path, epochs=1).train()
    h = make_hyrax(
        tmp_path,
        train__model_weights_file=str(done.run_dir / "example_model.pth"),
        model__HyraxAutoencoder__latent_dim=4,
    )
    with pytest.raises(WeightsError, match=r"to_latent.weight"):
        h.train()


def _probe(train_batch):
    cls = type(
        "LossProbe",
        (nn.Module,),
        {
            "__init__": lambda self, config, data_sample=None: (
                nn.Module.__init__(self),
                setattr(self, "layer", nn.Linear(192, 1)),
            )[0],
            "forward": lambda self, x: self.layer(x.flatten(1)),
            "prepare_inputs": staticmethod(lambda batch: batch["data"]["image"]),
            "train_batch": train_batch,
            "infer_batch": lambda self, x: self(x),
        },
    )
    return hyrax_model(cls)


def test_nan_loss_stops_with_epoch_and_batch(tmp_path):
    calls = []

    def train_batch(self, x):
        calls.append(1)
        return {"loss": float("nan") if len(calls) == 5 else 1.0}

    _probe(train_batch)
    h = make_hyrax(tmp_path, model="LossProbe", epochs=3)
    # Calls 1-3: epoch 1's batches; 4: its validation (no validate_batch: train_batch without steps); 5: epoch 2, batch 1.
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, batch 1"):
        h.train()
    run = next((tmp_path / "results").glob("*-train-*"))
    assert (run / "checkpoint_epoch_1.pt").is_file() and not (run / "checkpoint_epoch_2.pt").exists()
    with open(run / "hyrax_run.toml", "rb") as handle:
        assert tomllib.load(handle)["status"] == "failed"
    MODELS.unregister("LossProbe")


def test_train_batch_without_loss(tmp_path):
    _probe(lambda self, x: {"error": 1.0})
    with pytest.raises(TrainingError, match=r"LossProbe.train_batch returned \['error'\] without a 'loss'"):
        make_hyrax(tmp_path, model="LossProbe").train()
    MODELS.unregister("LossProbe")


def test_model_name_unset_lists_models(tmp_path):
    h = make_hyrax(tmp_path)
    h.set_config("model.name", False)
    with pytest.raises(ConfigError, match=r"model.name is not set.*HyraxAutoencoder.*SimCLR"):
        h.train()


def test_mlflow_and_tensorboard_record_the_run(tmp_path):
    model = make_hyrax(tmp_path, epochs=2).train()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "results" / "mlflow").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("notebook").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == model.run_dir.name
    params = runs[0].data.params
    assert params["model.name"] == "HyraxAutoencoder" and params["model.HyraxAutoencoder.latent_dim"] == "64"
    assert params["optimizer.name"] == "torch.optim.SGD" and params["torch.optim.SGD.lr"] == "0.01"
    assert params["train.epochs"] == "2" and params["data_loader.batch_size"] == "10"
    history = client.get_metric_history(runs[0].info.run_id, "validation_loss")
    assert [m.step for m in history] == [1, 2]
    scalars = read_tensorboard_scalars(model.run_dir / "tensorboard")
    assert [step for step, _ in scalars["training_loss"]] == [1, 2]
    assert len(scalars["validation_loss"]) == 2


def test_mlflow_runs_of_killed_trainings_end_as_killed(tmp_path):
    """A training killed mid-run leaves its MLflow run RUNNING; the next training finds it (its run
    directory has no live writer) and marks it KILLED (issue 15)."""
    from mlflow.tracking import MlflowClient

    from hyrax.results.run_dir import RunDir

    first = make_hyrax(tmp_path, model="HyraxLoopback", epochs=1).train()
    client = MlflowClient(tracking_uri=(tmp_path / "results" / "mlflow").resolve().as_uri())
    experiment = client.get_experiment_by_name("notebook").experiment_id
    # What kill -9 of a training leaves: a running train directory without a writer, a RUNNING MLflow run.
    killed = RunDir.create(make_hyrax(tmp_path).config, "train")
    killed.unlock()
    orphan = client.create_run(experiment, run_name=killed.path.name)
    make_hyrax(tmp_path, model="HyraxLoopback", epochs=1).train()
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    finished = [r for r in client.search_runs([experiment]) if r.info.run_name == first.run_dir.name]
    assert finished[0].info.status == "FINISHED"  # a finished run is left as it is


def read_tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars from TensorBoard event files (TFRecord framing around Event protobufs)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            record = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.mark.parametrize(
    "name", ["HyraxAutoencoder", "HyraxAutoencoderV2", "ImageDCAE", "HyraxCNN", "SimCLR"]
)
def test_builtin_image_models_learn_the_galaxies(tmp_path, name):
    h = make_hyrax(tmp_path, model=name, epochs=4, dataset="DecalsRingsDataset", data_loader__batch_size=32)
    h.set_config("split.train", 0.5)
    h.set_config("model.HyraxCNN.output_classes", 2)
    h.set_config("optimizer.name", "torch.optim.Adam")  # 4 epochs: Adam, not the published SGD default
    h.set_config("'torch.optim.Adam'.lr", 3e-3)
    model = h.train()
    losses = [epoch["training_loss"] for epoch in model.training_history]
    assert len(losses) == 4 and losses[-1] < losses[0], losses


def test_loopback_trains_on_random_data(tmp_path):
    model = make_hyrax(tmp_path, model="HyraxLoopback", epochs=1).train()
    assert model.final_training_metrics["training_loss"] == 0.0


@hyrax_model
class PublishedClassifier(nn.Module):
    """Written for the published Hyrax: relies on its default criterion (CrossEntropyLoss)."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer = nn.Linear(192, 3)

    def forward(self, x):
        return self.layer(x.flatten(1))

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"], batch["data"]["label"]

    def train_batch(self, batch):
        image, label = batch
        self.optimizer.zero_grad()
        loss = self.criterion(self(image), label)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def infer_batch(self, batch):
        return self(batch[0])


def test_a_model_written_for_the_published_defaults_trains(tmp_path):
    """criterion.name defaults to CrossEntropyLoss, as published (the built-in autoencoders still
    reconstruct with mean squared error); the optimizer is the published SGD, tuned by its table; settings
    for an optimizer that is not in use are a warning."""
    h = make_hyrax(tmp_path, model="PublishedClassifier", epochs=1)
    h.set_config("'torch.optim.SGD'.lr", 0.5)  # a published config tuning its default optimizer
    h.set_config("'torch.optim.Adam'.lr", 1e-3)  # a config written for Adam, our earlier default
    with pytest.warns(
        UserWarning, match=r'\["torch.optim.Adam"\] is set \(lr = 0.001.*optimizer.name = "torch.optim.Adam"'
    ):
        model = h.train()
    assert type(model.optimizer) is torch.optim.SGD and model.optimizer.param_groups[0]["lr"] == 0.5
    assert isinstance(model.criterion, nn.CrossEntropyLoss) and model.final_training_metrics["loss"] > 0
    autoencoder = make_hyrax(tmp_path, epochs=1).train()
    assert isinstance(autoencoder.criterion, nn.MSELoss)
    chosen = make_hyrax(tmp_path, epochs=1, criterion__name="torch.nn.L1Loss").train()
    assert isinstance(chosen.criterion, nn.L1Loss)


def test_on_epoch_start_is_told_the_verb(tmp_path):
    """As published: during training every dataset (validation too) hears "train"; infer says "infer"."""
    from hyrax.datasets.random import HyraxRandomDataset

    heard = []

    class Listening(HyraxRandomDataset):
        def on_epoch_start(self, verb):
            heard.append(verb)

    h = make_hyrax(tmp_path, model="HyraxLoopback", epochs=2, dataset="Listening")
    h.train()
    assert set(heard) == {"train"} and len(heard) >= 4  # two groups, two epochs
    heard.clear()
    h.set_config("data_request.infer.data", {"dataset_class": "Listening"})
    results = h.infer()
    assert heard == ["infer"]
    # The results as a LanceDB table, as published (results.table.search(vector)...).
    found = results.table.search(results[0].reshape(-1)).metric("L2").limit(2).to_list()
    assert found[0]["object_id"] == str(results.ids()[0]) and found[0]["_distance"] == 0.0


@pytest.mark.slow  # test_cli_verbs runs train and model on the command line in the default suite
def test_cli_train_and_model_verbs(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[general]
results_dir = "{tmp_path / "results"}"
[model]
name = "HyraxAutoencoder"
[train]
epochs = 1
[data_loader]
batch_size = 16
num_workers = 0
[data_request.train.galaxies]
dataset_class = "DecalsRingsDataset"
"""
    )
    result = run_hyrax("train", "-c", str(config), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "training_loss" in result.stdout and "weights and checkpoints:" in result.stdout
    result = run_hyrax("model", "-c", str(config), timeout=120)
    assert result.returncode == 0 and "hyrax.models.autoencoder.HyraxAutoencoder" in result.stdout
    assert "latent_dim = 64" in result.stdout


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_two_process_ddp_writes_one_set_of_weights(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[general]
results_dir = "{tmp_path / "results"}"
distributed = true
[model]
name = "HyraxAutoencoder"
[model.HyraxAutoencoder]
base_channel_size = 8
latent_dim = 8
[train]
epochs = 2
[data_loader]
batch_size = 16
num_workers = 0
[data_set.HyraxRandomDataset]
size = 64
shape = [3, 16, 16]
[data_request.train.data]
dataset_class = "HyraxRandomDataset"
[data_request.validate.data]
dataset_class = "HyraxRandomDataset"
[split]
train = 0.75
"""
    )
    result = torchrun_hyrax("train", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "results").glob("*-train-*"))
    assert len(runs) == 1
    assert sorted(p.name for p in runs[0].glob("*.pth")) == ["example_model.pth"]
    with open(runs[0] / "hyrax_run.toml", "rb") as handle:
        assert tomllib.load(handle)["status"] == "complete"
    assert result.stdout.count("weights and checkpoints:") == 2  # both ranks trained and finished


def test_test_verb_evaluates_the_held_out_objects(tmp_path):
    """h.test() as published: outputs of the test group in a run directory (with test_weights.pth), and
    here also the mean of each test_batch metric; the test objects are the ones training held out."""
    import numpy as np

    from hyrax.config_utils import find_most_recent_results_dir

    h = make_hyrax(tmp_path, model="HyraxAutoencoder", epochs=1)
    h.set_config("data_request.test.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("split", {"train": 0.6, "validate": 0.2, "test": 0.2})
    model = h.train()
    held_out = np.load(model.run_dir / "test_split.npz")["indices"]
    used = np.concatenate(
        [np.load(model.run_dir / f"{g}_split.npz")["indices"] for g in ("train", "validate")]
    )
    assert len(held_out) == 8 and not set(held_out) & set(used)
    results = h.test()
    assert len(results) == 8 and sorted(results.ids().astype(int)) == sorted(held_out.tolist())
    assert (results.data_location / "test_weights.pth").is_file()
    assert results.metrics["loss"] > 0
    assert find_most_recent_results_dir(h.config, "test") == results.data_location
    with open(results.data_location / "test_metrics.toml", "rb") as handle:
        assert tomllib.load(handle)["metrics"]["loss"] == pytest.approx(results.metrics["loss"])


def test_test_verb_without_a_test_group_says_what_to_add(tmp_path):
    h = make_hyrax(tmp_path, model="HyraxLoopback", epochs=1)
    h.train()
    with pytest.raises(ConfigError, match=r"needs a \[data_request.test\] group.*Groups: train, validate"):
        h.test()


def test_trace_follows_a_few_objects_through_train_infer_and_test(tmp_path):
    """trace=N as published: one batch of N objects, returned as a TraceResult of stages and calls."""
    from hyrax.trace import TraceResult, TraceStage, get_trace, trace_dataset_func

    calls = []

    class Traced(__import__("hyrax.datasets.random", fromlist=["x"]).HyraxRandomDataset):
        @trace_dataset_func
        def get_image(self, idx):
            calls.append(idx)
            return super().get_image(idx)

    h = make_hyrax(tmp_path, model="HyraxLoopback", epochs=3, dataset="Traced")
    h.set_config("data_request.infer.data", {"dataset_class": "Traced"})
    h.set_config("data_request.test.data", {"dataset_class": "Traced"})
    h.set_config("split", {"train": 0.6, "validate": 0.2, "test": 0.2})
    trace = h.train(trace=2)
    assert isinstance(trace, TraceResult) and isinstance(trace.collate, TraceStage)
    assert trace["collate"][0].batch_dict["data"]["image"].shape[0] == 2
    assert len(trace.resolve_data["DataProvider__resolve_data"]) == 4  # 2 train + 2 validate
    evaluation = trace.evaluation[0]
    assert evaluation["batch"] is evaluation[0] and "train_batch" in str(evaluation)
    assert len(trace.dataset_getter) >= 4 and "Traced" in str(trace)
    assert get_trace() is None  # nothing is recorded once the verb returns
    h.train()
    trace = h.infer(trace=3)
    assert len(trace["resolve_data"]) == 3 and len(trace["collate"]) == 1
    assert len(h.test(trace=2).resolve_data) == 2
    assert not isinstance(h.infer(), TraceResult)  # and the config was the verb's own copy


def test_distributed_true_in_a_notebook_runs_in_this_process(tmp_path):
    """As published: general.distributed = true without torchrun trains here, with a warning saying how
    to start several processes."""
    h = make_hyrax(tmp_path, model="HyraxLoopback", epochs=1, general__distributed=True)
    with pytest.warns(UserWarning, match="runs alone.*torchrun --nproc_per_node=N"):
        assert h.train().final_training_metrics["loss"] == 0.0


@pytest.mark.parametrize("name", ["HSCAutoencoder", "HSCDCAE"])
def test_published_hsc_model_names_train(tmp_path, name):
    model = make_hyrax(tmp_path, model=name, epochs=1).train()
    assert model.final_training_metrics["loss"] > 0 and name in Hyrax(setup_logging=False).list_models()


def test_a_full_disk_during_training_leaves_a_failed_run_and_no_temporary_files(tmp_path):
    """The file-size limit stands in for a full disk, in a real process: training stops with the error,
    its run is marked failed, and no half-written checkpoint is left (issue 15)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        from hyrax import Hyrax
        h = Hyrax(setup_logging=False)
        h.set_config("general.results_dir", {str(tmp_path / "results")!r})
        h.set_config("model.name", "HyraxAutoencoder")
        h.set_config("data_request.train.data", {{"dataset_class": "HyraxRandomDataset"}})
        h.set_config("data_set.HyraxRandomDataset.shape", [3, 32, 32])
        h.set_config("train.epochs", 1)
        h.set_config("data_loader.num_workers", 0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # big enough for status files only
        h.train()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert (
        done.returncode != 0
        and "Cannot write the checkpoint" in done.stderr
        and "train.resume" in done.stderr
    )
    run = next((tmp_path / "results").glob("*-train-*"))
    with open(run / "hyrax_run.toml", "rb") as handle:
        assert tomllib.load(handle)["status"] == "failed"
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
