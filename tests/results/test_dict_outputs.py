"""infer_batch returning a dict: one results column per key (Lance), read as the published ResultDataset
reads them, resumable, and each key a [data_request] field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hyrax import Hyrax
from hyrax.errors import ResultsError
from hyrax.models import hyrax_model
from hyrax.results.store import ResultDataset, ResultWriter


@hyrax_model
class TwoHeads(nn.Module):
    """A 0.13 model whose infer_batch returns a dict: a latent vector and class scores."""

    fail_after: int | None = None  # batches before infer_batch raises (an interrupted run)

    def __init__(self, config, data_sample=None):
        super().__init__()
        self.latent = nn.Linear(8, 3)
        self.head = nn.Linear(3, 2)
        self.calls = 0

    @staticmethod
    def prepare_inputs(data_dict):
        return data_dict["data"]["image"]

    def forward(self, x):
        return self.latent(x.flatten(1))

    def train_batch(self, x):
        return {"loss": 0.0}

    def infer_batch(self, x):
        self.calls += 1
        if TwoHeads.fail_after is not None and self.calls > TwoHeads.fail_after:
            raise RuntimeError("interrupted on purpose")
        z = self(x)
        return {"data": z, "logits": self.head(z), "flag": (z[:, :1] > 0).to(torch.int64)}


def two_heads(tmp_path) -> Hyrax:
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    h.set_config("model.name", "TwoHeads")
    h.set_config("data_set.HyraxRandomDataset.shape", [2, 2, 2])
    h.set_config("data_set.HyraxRandomDataset.size", 24)
    for group in ("train", "infer"):
        h.set_config(f"data_request.{group}.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("train.epochs", 1)
    h.set_config("data_loader.batch_size", 5)
    h.set_config("data_loader.num_workers", 0)
    h.set_config("data_set.seed", 1)
    h.train()
    return h


def test_published_dict_outputs_read_through_result_dataset(tmp_path):
    """As a 0.13 user reads them: keys(), results[i] a dict, get_<key>(i), and the Lance table itself."""
    h = two_heads(tmp_path)
    results = h.infer()
    from hyrax.datasets.result_dataset import ResultDataset as PublishedName

    again = PublishedName(h.config, results.data_location)
    assert again.keys() == ["data", "logits", "flag"]
    row = again[3]
    assert set(row) == {"data", "logits", "flag"}
    assert row["data"].shape == (3,) and row["logits"].shape == (2,) and row["flag"].dtype == np.int64
    np.testing.assert_array_equal(again.get_logits(3), row["logits"])
    assert len(again[[0, 1]]) == 2 and set(again[[0, 1]][1]) == {"data", "logits", "flag"}
    import lance

    table = lance.dataset(str(results.data_location / "lance_db" / "results.lance"))  # without Hyrax
    assert table.schema.names == ["object_id", "data", "logits", "flag"]
    # The vectors the later verbs read are the "data" column.
    assert results.take([3])[1].shape == (1, 3)


def test_dict_outputs_resume_and_read_as_fields(tmp_path):
    """Ours: an interrupted run of dict outputs continues (each id once, same values), and each key is a
    [data_request] field of the run's ResultDataset."""
    h = two_heads(tmp_path)
    h.set_config("infer.commit_seconds", 0)  # every batch committed
    whole = h.infer()
    TwoHeads.fail_after = 2
    try:
        with pytest.raises(RuntimeError, match="interrupted on purpose"):
            h.infer()
    finally:
        TwoHeads.fail_after = None
    run = max((tmp_path / "results").glob("*-infer-*"), key=lambda p: p.stat().st_mtime)
    assert 0 < len(ResultDataset(data_location=run / "lance_db" / "results.lance")) < 24
    resumed = h.infer(resume=run)
    assert list(resumed.ids()) == list(whole.ids())
    np.testing.assert_allclose(resumed[np.arange(24)][5]["logits"], whole[5]["logits"], rtol=1e-6)
    h.set_config(
        "data_request.infer", {"previous": {"dataset_class": "ResultDataset", "data_location": str(run)}}
    )
    h.set_config("data_request.infer.previous.fields", ["logits", "flag"])
    provider = h.prepare()["infer"]
    batch = provider.collate([provider[i] for i in range(4)])
    assert batch["previous"]["logits"].shape == (4, 2) and batch["previous"]["flag"].shape == (4, 1)


def test_results_writer_columns_are_checked(tmp_path):
    with ResultWriter(
        tmp_path, {"logits": (2,), "flag": (1,)}, {"logits": "float32", "flag": "int64"}
    ) as writer:
        writer.write(np.array(["a", "b"]), {"logits": np.ones((2, 2)), "flag": np.zeros((2, 1), int)})
        with pytest.raises(ResultsError, match=r"has the keys logits; this table holds logits, flag"):
            writer.write(np.array(["c"]), {"logits": np.ones((1, 2))})
        with pytest.raises(ResultsError, match=r"\(logits\) has shape \(3,\); this table holds \(2,\)"):
            writer.write(np.array(["c"]), {"logits": np.ones((1, 3)), "flag": np.zeros((1, 1), int)})
    with pytest.raises(
        ResultsError, match=r"holds logits \[2\] float32, flag \[1\] int64, but the model now"
    ):
        ResultWriter(tmp_path, (2,), "float32", resume=True)
    results = ResultDataset(data_location=tmp_path)
    assert results[1]["flag"].tolist() == [0]
    assert list(results.to_pandas().columns) == ["object_id", "logits", "flag"]
    with pytest.raises(ResultsError, match=r"columns logits, flag and no 'data' column"):
        results.get_data(0)
    with pytest.raises(ResultsError, match=r"no column 'data'; their columns: logits, flag"):
        results.lookup("a")


# -- dict outputs under torchrun, engine and infer_stream --------------------------------------------


def test_distributed_parts_of_dict_outputs_publish_one_column_per_key(tmp_path):
    """Ours: two ranks' shares of dict outputs (PartWriter) published as one table of named columns, with
    0.13's metadata per key; a share of another layout is refused."""
    from hyrax.training.distributed_inference import PartWriter, _open_plan, publish_parts

    shapes, dtypes = (
        {"data": (3,), "logits": (2,)},
        {"data": np.dtype("float32"), "logits": np.dtype("float64")},
    )
    assert _open_plan(tmp_path, 2, 6, shapes, dtypes)["shape"] == {"data": [3], "logits": [2]}
    for rank in range(2):
        part = PartWriter(tmp_path, rank, shapes, dtypes, commit_seconds=60)
        ids = np.array([f"o{3 * rank + i}" for i in range(3)])
        part.write(ids, {"data": np.full((3, 3), rank, np.float32), "logits": np.ones((3, 2)) * rank}, 0)
        with pytest.raises(ResultsError, match=r"is an array; this table holds the columns data, logits"):
            part.write(ids, np.ones((3, 3), np.float32), 0)
        part.finish(0)
    assert publish_parts(tmp_path).results == 6
    results = ResultDataset(data_location=tmp_path)
    assert results.keys() == ["data", "logits"] and results.ids().tolist() == [f"o{i}" for i in range(6)]
    assert results[4]["logits"].tolist() == [1.0, 1.0] and results[4]["logits"].dtype == np.float64
    with pytest.raises(ResultsError, match=r"holds vectors of shape \{'data': \[3\], 'logits': \[2\]\}"):
        (tmp_path / "lance_db" / "parts").mkdir()
        (tmp_path / "lance_db" / "parts" / "plan.json").write_text(
            '{"world_size": 2, "objects": 6, "shape": {"data": [3], "logits": [2]}, '
            '"dtype": {"data": "float32", "logits": "float64"}, "committed": false}'
        )
        _open_plan(tmp_path, 2, 6, (3,), "float32")


@pytest.mark.slow  # two torchrun processes: ~30 s on 2 cores
def test_torchrun_infer_of_dict_outputs_equals_one_process(tmp_path, monkeypatch):
    """As published: torchrun --nproc_per_node=2 -m hyrax infer with a model whose infer_batch returns a
    dict: the same columns and values as one process."""
    from pathlib import Path

    import tomlkit

    from hyrax.config import to_plain
    from tests.conftest import torchrun_hyrax

    root = Path(__file__).resolve().parents[2]
    h = two_heads(tmp_path)
    single = h.infer()
    h.set_config("model.name", "tests.results.test_dict_outputs.TwoHeads")
    h.set_config("general.results_dir", str(tmp_path / "ddp"))
    h.set_config("infer.model_weights_file", str(max((tmp_path / "results").glob("*-train-*"))))
    config = tmp_path / "config.toml"
    config.write_text(tomlkit.dumps(to_plain(h.config)))
    monkeypatch.setenv("PYTHONPATH", str(root))
    done = torchrun_hyrax("infer", config, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "ddp").glob("*-infer-*")
    both = ResultDataset(data_location=run)
    assert both.keys() == single.keys() and both.ids().tolist() == single.ids().tolist()
    for i in (0, 11, 23):
        for key in ("data", "logits", "flag"):
            np.testing.assert_allclose(both[i][key], single[i][key], rtol=1e-5)


@pytest.mark.slow  # ONNX export and onnxruntime: ~10 s on 2 cores
def test_engine_of_dict_outputs_as_published(tmp_path):
    """h.to_onnx() then h.engine() for a model whose infer_batch returns a dict: one graph output per key,
    and the engine's table has the columns and values infer writes."""
    import onnx

    h = two_heads(tmp_path)
    single = h.infer()
    export = h.to_onnx()
    graph = onnx.load(str(export / "model.onnx"), load_external_data=False).graph
    assert [o.name for o in graph.output] == ["data", "logits", "flag"]
    engine = h.engine()
    assert engine.keys() == ["data", "logits", "flag"] and engine.ids().tolist() == single.ids().tolist()
    for i in (0, 23):
        for key in ("data", "logits", "flag"):
            np.testing.assert_allclose(engine[i][key], single[i][key], rtol=1e-5, atol=1e-6)
