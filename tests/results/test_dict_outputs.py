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
