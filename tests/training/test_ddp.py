"""Training under torch's DistributedDataParallel (training/distributed.py: DataParallel).

Default suite: one gloo process group of one process, made in this process (~1 s): train_batch's
calls of the model go through DDP, every gradient is all-reduced exactly once a step, the model is
left as it was. -m slow: real torchrun runs of 2 processes against 1 (weights equal), a model with an
unused parameter and one with BatchNorm (no hang), a killed run resumed (equal to one not killed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from hyrax.errors import ConfigError
from hyrax.training.distributed import DataParallel
from hyrax.training.loop import TrainingError


class Small(nn.Module):
    """Encoder in forward, decoder used outside it (as HyraxAutoencoder does), and an unused layer."""

    def __init__(self):
        super().__init__()
        self.encoder, self.decoder, self.unused = nn.Linear(4, 3), nn.Linear(3, 4), nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)

    def forward(self, x):
        return self.encoder(x)

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = ((self.decoder(self(x)) - x) ** 2).mean() + self.forward(x).mean()  # two forwards
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}


class Sideways(Small):
    def train_batch(self, x):  # never calls the model itself: DDP would not see the step
        self.optimizer.zero_grad()
        self.decoder(self.encoder(x)).mean().backward()
        self.optimizer.step()
        return {"loss": 0.0}


@pytest.fixture
def one_process_group(tmp_path):
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def config(**train):
    return {"train": {"find_unused_parameters": "auto", "sync_batchnorm": False, **train}}


def test_train_batch_runs_through_ddp_and_each_gradient_is_reduced_once(one_process_group):
    torch.manual_seed(0)
    model = Small()
    parallel = DataParallel(model, config(), torch.device("cpu"))
    reduced: list[list[int]] = []
    index = {id(p): i for i, p in enumerate(model.parameters())}

    def counting_hook(state, bucket):
        reduced[-1].extend(index[id(p)] for p in bucket.parameters())
        work = torch.distributed.all_reduce(bucket.buffer(), async_op=True)
        return work.get_future().then(lambda future: future.value()[0])

    parallel.wrapper.register_comm_hook(None, counting_hook)
    for _ in range(3):
        reduced.append([])
        output = parallel.train_batch(torch.randn(5, 4))
        assert output["loss"] > 0
    used = [index[id(p)] for p in (*model.encoder.parameters(), *model.decoder.parameters())]
    for step in reduced:  # every parameter that had a gradient, once a step (the first step: all)
        assert sorted(step) in (sorted(used), sorted(index.values()))
    assert parallel.forward_calls == 6  # both of train_batch's forwards went through DDP
    assert "forward" not in model.__dict__  # the model is left as it was
    assert model(torch.zeros(1, 4)).shape == (1, 3)


def test_a_train_batch_that_never_calls_the_model_is_refused(one_process_group):
    parallel = DataParallel(Sideways(), config(), torch.device("cpu"))
    with pytest.raises(TrainingError, match=r"Sideways.train_batch never called the model itself.*self\("):
        parallel.train_batch(torch.randn(5, 4))


def test_sync_batchnorm_on_cpu_says_it_needs_gpus(one_process_group):
    with pytest.raises(ConfigError, match="train.sync_batchnorm = true.*GPUs only.*sync_batchnorm = false"):
        DataParallel(Small(), config(sync_batchnorm=True), torch.device("cpu"))


def test_the_keys_are_declared_and_checked():
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    assert h.config["train"]["find_unused_parameters"] == "auto"
    assert h.config["train"]["sync_batchnorm"] is False
    h.set_config("train.find_unused_parameters", True)
    with pytest.raises(ConfigError, match="train.find_unused_parameters.*must be one of 'auto'"):
        h.set_config("train.find_unused_parameters", "sometimes")


# -- torchrun (slow) ----------------------------------------------------------------------------------

MODELS = '''
import torch
from torch import nn
from hyrax import hyrax_model


@hyrax_model
class WithUnused(nn.Module):
    """A layer that no loss ever uses: DDP without help waits for its gradient."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.layer, self.unused = nn.Linear(192, 4), nn.Linear(3, 3)

    def forward(self, x):
        return self.layer(x.flatten(1))

    def train_batch(self, x):
        self.optimizer.zero_grad()
        loss = self(x).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def infer_batch(self, x):
        return self(x)

    @staticmethod
    def prepare_inputs(batch):
        return batch["data"]["image"]
'''


def write_config(tmp_path: Path, model: str, epochs: int, batch_size: int, **extra: str) -> Path:
    lines = "\n".join(f"{key} = {value}" for key, value in extra.items())
    path = tmp_path / f"config_{model}_{batch_size}.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [general]
            results_dir = "{tmp_path / "results"}"
            [model]
            name = "{model}"
            [model.HyraxAutoencoder]
            base_channel_size = 4
            latent_dim = 4
            [model.HyraxAutoencoderV2]
            base_channel_size = 4
            latent_dim = 4
            [train]
            epochs = {epochs}
            {lines}
            [data_loader]
            batch_size = {batch_size}
            num_workers = 0
            [data_set]
            seed = 7
            [data_set.HyraxRandomDataset]
            size = 80
            shape = [3, 8, 8]
            [data_request.train.data]
            dataset_class = "HyraxRandomDataset"
            [data_request.validate.data]
            dataset_class = "HyraxRandomDataset"
            [split]
            train = 0.8
            """
        )
    )
    return path


def hyrax(tmp_path: Path, *args, processes: int = 0, timeout: int = 400, **env: str):
    """``hyrax ARGS`` (processes 0) or ``torchrun --nproc_per_node=processes -m hyrax ARGS``."""
    launcher = [sys.executable, "-m", "hyrax"]
    if processes:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += [f"--nproc_per_node={processes}", "-m", "hyrax"]
    environment = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    environment.update(env)
    return subprocess.run(
        [*launcher, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=environment,
    )


def final_weights(tmp_path: Path, before: set[Path]) -> tuple[Path, dict]:
    (run,) = set((tmp_path / "results").glob("*-train-*")) - before
    state = torch.load(run / "example_model.pth", weights_only=True)
    return run, state.get("model", state) if isinstance(state, dict) else state


def runs(tmp_path: Path) -> set[Path]:
    return set((tmp_path / "results").glob("*-train-*"))


def assert_equal_weights(first: dict, second: dict, tolerance: float = 1e-5) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key].float(), second[key].float(), atol=tolerance), key


@pytest.mark.slow
def test_two_processes_end_with_the_weights_of_one_on_the_same_global_batch(tmp_path):
    """1 process with batches of 16 against 2 processes with 8 each (torchrun, DDP on gloo), same seed:
    the same global batches, the same averaged gradients, the same final weights."""
    before = runs(tmp_path)
    result = hyrax(tmp_path, "train", "-c", write_config(tmp_path, "HyraxAutoencoder", 3, 16))
    assert result.returncode == 0, result.stderr[-3000:]
    _, alone = final_weights(tmp_path, before)
    before = runs(tmp_path)
    config = write_config(tmp_path, "HyraxAutoencoder", 3, 8)
    result = hyrax(tmp_path, "train", "-c", config, processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    _, together = final_weights(tmp_path, before)
    assert_equal_weights(alone, together)
    assert any((alone[key] != torch.zeros_like(alone[key])).any() for key in alone)


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["auto", "true"])
def test_a_model_with_an_unused_parameter_trains_under_torchrun(tmp_path, setting):
    (tmp_path / "ddp_models.py").write_text(MODELS)
    config = write_config(
        tmp_path,
        "ddp_models.WithUnused",
        2,
        8,
        find_unused_parameters=f'"{setting}"'.replace('"true"', "true"),
    )
    result = hyrax(tmp_path, "train", "-c", config, processes=2, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("weights and checkpoints:") == 2


@pytest.mark.slow
def test_a_model_with_batchnorm_trains_under_torchrun_with_rank_0s_statistics(tmp_path):
    """HyraxAutoencoderV2 (BatchNorm2d) on CPU: each process normalises its batch, DDP broadcasts rank
    0's running statistics; no hang, and the saved statistics moved off their initial values."""
    before = runs(tmp_path)
    result = hyrax(
        tmp_path, "train", "-c", write_config(tmp_path, "HyraxAutoencoderV2", 2, 8), processes=2, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, weights = final_weights(tmp_path, before)
    means = [value for key, value in weights.items() if key.endswith("running_mean")]
    assert means and all(mean.abs().sum() > 0 for mean in means)


@pytest.mark.slow
def test_a_killed_torchrun_training_resumes_and_ends_as_one_not_killed(tmp_path):
    """Rank 0 killed (SIGKILL) right after writing epoch 2's checkpoint; torchrun stops rank 1. `hyrax
    train --resume RUN` under torchrun continues epoch 3 and ends with the weights of an uninterrupted
    2-process run."""
    config = write_config(tmp_path, "HyraxAutoencoder", 3, 8)
    before = runs(tmp_path)
    result = hyrax(tmp_path, "train", "-c", config, processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    _, uninterrupted = final_weights(tmp_path, before)
    before = runs(tmp_path)
    killed = hyrax(
        tmp_path,
        "train",
        "-c",
        config,
        processes=2,
        HYRAX_FAULT="train.epoch_checkpointed:2",
        HYRAX_FAULT_RANK="0",
    )
    assert killed.returncode != 0
    (run,) = runs(tmp_path) - before
    assert [p.name for p in run.glob("checkpoint_epoch_*.pt")] == ["checkpoint_epoch_2.pt"]
    assert not (run / "example_model.pth").exists()
    resumed = hyrax(tmp_path, "train", "--resume", run, processes=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(run / "example_model.pth", weights_only=True)
    assert_equal_weights(uninterrupted, state.get("model", state))
