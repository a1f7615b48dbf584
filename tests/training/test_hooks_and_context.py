"""Run contexts (hyrax.context: get_context / use_context) and the models' epoch hooks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from hyrax import Hyrax
from hyrax.context import RunContext, get_context, run_context, use_context
from hyrax.models import hyrax_model


def small_hyrax(tmp_path, model: str, epochs: int = 2) -> Hyrax:
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", model)
    h.set_config("data_set.HyraxRandomDataset.shape", [2, 2, 2])
    h.set_config("data_set.HyraxRandomDataset.size", 12)
    for group in ("train", "validate", "infer"):
        h.set_config(f"data_request.{group}.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("split.train", 0.75)
    h.set_config("train.epochs", epochs)
    h.set_config("data_loader.batch_size", 4)
    h.set_config("data_loader.num_workers", 0)
    h.set_config("data_set.seed", 1)
    return h


@hyrax_model
class ContextScaled(nn.Module):
    """A 0.13 model: its static prepare_inputs reads its setting from the run context."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.0)
        self.seen: list[tuple[str, str]] = []

    @staticmethod
    def prepare_inputs(data_dict):
        from hyrax import get_context

        scale = get_context()["config"]["model"]["ContextScaled"]["scale"]
        return data_dict["data"]["image"] * scale

    def forward(self, x):
        return x.flatten(1) * self.weight

    def train_batch(self, x):
        loss = (self(x) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def validate_batch(self, x):
        return {"loss": float((self(x) ** 2).mean())}

    def test_batch(self, x):
        return {"loss": float((self(x) ** 2).mean())}

    def infer_batch(self, x):
        return self(x)

    def train_post_epoch(self):
        context = get_context()
        self.seen.append(("train_post_epoch", context["verb"]))
        (context["results_dir"] / f"epoch_{len(self.seen)}.txt").write_text("done")

    def validate_post_epoch(self):
        self.seen.append(("validate_post_epoch", get_context()["verb"]))

    def test_post_epoch(self):
        self.seen.append(("test_post_epoch", get_context()["verb"]))


def test_published_get_context_in_prepare_inputs_and_epoch_hooks(tmp_path):
    """As a 0.13 user writes it: prepare_inputs reads [model.<Class>] through get_context(), in training
    (and the fresh-Python check of the saved prepare_inputs) and in inference; the hooks are called with
    no arguments after each epoch's batches, results_dir in the context."""
    h = small_hyrax(tmp_path, "ContextScaled")
    h.set_config("model.ContextScaled", {"scale": 3.0})
    model = h.train()
    assert model.seen == [
        ("train_post_epoch", "train"),
        ("validate_post_epoch", "train"),
        ("train_post_epoch", "train"),
        ("validate_post_epoch", "train"),
    ]
    assert sorted(p.name for p in model.run_dir.glob("epoch_*.txt")) == ["epoch_1.txt", "epoch_3.txt"]
    results = h.infer()
    assert "config" not in get_context()  # released when the verb returned
    first = np.asarray(results[0]).reshape(-1)
    from hyrax.datasets.provider import DataProvider

    provider = DataProvider(h.config, "infer")
    row = provider.collate([provider[0]])
    np.testing.assert_allclose(first, (row["data"]["image"][0] * 3.0).reshape(-1), rtol=1e-6)


def test_test_post_epoch_hook(tmp_path):
    h = small_hyrax(tmp_path, "ContextScaled", epochs=1)
    h.set_config("model.ContextScaled", {"scale": 1.0})
    h.set_config("data_request.test.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("split.test", 0.25)
    h.set_config("split.train", 0.5)
    h.train()
    seen = []
    original = ContextScaled.test_post_epoch
    ContextScaled.test_post_epoch = lambda self: seen.append(get_context()["verb"])
    try:
        h.test()
    finally:
        ContextScaled.test_post_epoch = original
    assert seen == ["test"]


@pytest.mark.slow
def test_loaded_prepare_inputs_reads_the_config_it_was_trained_with(tmp_path):
    """Ours: the config is saved beside the weights (prepare_inputs_context.json); an infer run with
    another setting, or a fresh Python with no run at all, prepares as training did."""
    h = small_hyrax(tmp_path, "ContextScaled", epochs=1)
    h.set_config("model.ContextScaled", {"scale": 3.0})
    run = h.train().run_dir
    assert (run / "prepare_inputs_context.json").is_file()
    h.set_config("model.ContextScaled", {"scale": 100.0})  # inference with another value: not used
    from hyrax.datasets.provider import DataProvider

    provider = DataProvider(h.config, "infer")
    image = provider.collate([provider[0]])["data"]["image"][0]
    np.testing.assert_allclose(np.asarray(h.infer()[0]).reshape(-1), (image * 3.0).reshape(-1), rtol=1e-6)
    script = (
        "import numpy as np, sys\n"
        "from hyrax.models.model import load_prepare_inputs\n"
        "prepare = load_prepare_inputs(sys.argv[1])\n"
        "print(float(prepare({'data': {'image': np.ones((1, 2))}})[0, 0]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(run)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"


def test_run_context_nests_and_restores():
    assert dict(get_context()) == {}
    with run_context("train", config={"a": 1}, results_dir="/tmp/x") as outer:
        assert outer["results_dir"].name == "x" and outer["rank"] == 0 and outer["world_size"] == 1
        with run_context("infer", config={"a": 2}):
            assert get_context()["config"] == {"a": 2}
        assert get_context() is outer  # the published Hyrax leaves an empty context here
        captured = get_context()
    assert dict(get_context()) == {}
    with use_context(captured):
        assert get_context()["verb"] == "train"
    try:
        get_context()["config"]
    except KeyError as error:
        assert "no Hyrax verb is running" in str(error) and "'config'" in str(error)
    else:
        raise AssertionError("an empty context gave a value")
    assert isinstance(get_context(), RunContext)


def test_ts2vec_prepare_inputs_reads_the_run_context_and_configure_inputs_still_works():
    """The published HyraxTs2Vec.prepare_inputs reads get_context()["config"]; ours does too, and outside
    a run it uses what configure_inputs set."""
    from hyrax.models.ts2vec import HyraxTs2Vec
    from tests.models.test_ts2vec import lc_batch, small_config

    HyraxTs2Vec.configure_inputs(small_config(max_sequence_length=8))
    assert HyraxTs2Vec.prepare_inputs(lc_batch()).shape[1] == 8
    with run_context("infer", config=small_config(max_sequence_length=16)):
        assert HyraxTs2Vec.prepare_inputs(lc_batch()).shape[1] == 16
    assert HyraxTs2Vec.prepare_inputs(lc_batch()).shape[1] == 8
    HyraxTs2Vec.configure_inputs(small_config())


@pytest.mark.slow
def test_stream_sessions_reenter_their_run_context(tmp_path):
    """A train_stream / infer_stream session's loop runs after the verb returned: the model still sees
    the session's run (verb, config, results_dir) in get_context(), and nothing is left after it."""
    from tests.stream.test_sessions import stream_hyrax

    h = stream_hyrax(tmp_path, "train_stream", n_objects=16)
    h.set_config("model.name", "tests.training.test_hooks_and_context.ContextTiny")
    with h.train_stream() as session:
        assert "config" not in get_context()  # the verb has returned
        for _ in session:
            pass
    assert (
        session.run_dir / "seen_train_stream.txt"
    ).read_text() == "tests.training.test_hooks_and_context.ContextTiny"
    h = stream_hyrax(tmp_path, "infer_stream", n_objects=8)
    h.set_config("model.name", "tests.training.test_hooks_and_context.ContextTiny")
    h.set_config("infer_stream.model_weights_file", str(session.weights_file))
    with h.infer_stream() as inferring:
        for _ in inferring:
            pass
    assert (inferring.run_dir / "seen_infer_stream.txt").is_file()
    assert dict(get_context()) == {}


def _record_context() -> None:
    context = get_context()
    (context["results_dir"] / f"seen_{context['verb']}.txt").write_text(context["config"]["model"]["name"])


from tests.stream.streams import TinyEncoder  # noqa: E402 - the base of the session test's model


@hyrax_model
class ContextTiny(TinyEncoder):
    def train_batch(self, x):
        _record_context()
        return super().train_batch(x)

    def infer_batch(self, x):
        _record_context()
        return super().infer_batch(x)


@pytest.mark.slow
def test_engine_prepares_with_the_config_the_model_was_trained_with(tmp_path):
    """to_onnx copies prepare_inputs.py with the training's config; engine, in a run with another
    setting, prepares as training did."""
    h = small_hyrax(tmp_path, "ContextScaled", epochs=1)
    h.set_config("model.ContextScaled", {"scale": 3.0})
    h.train()
    h.set_config("model.ContextScaled", {"scale": 100.0})  # the export and engine runs' config
    h.to_onnx()
    from hyrax.datasets.provider import DataProvider

    provider = DataProvider(h.config, "infer")
    image = provider.collate([provider[0]])["data"]["image"][0]
    np.testing.assert_allclose(np.asarray(h.engine()[0]).reshape(-1), (image * 3.0).reshape(-1), rtol=1e-5)
