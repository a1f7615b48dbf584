"""A simulated scientist for the discovery loop (tests/discovery and benchmarks/discovery.py): real data
in which the interesting objects are rare, and a user who labels only what Hyrax suggests (nothing it
was not shown), saying "interesting" only for the true class.

* galaxies: the bundled DECaLS galaxies with the ring galaxies thinned (seeded) to 5% of the objects;
  HyraxAutoencoder's latent vectors.
* transients: the 500 CRTS transients (tests/data/crts_transients) with one rare class as interesting;
  their light curves resampled to one shape by NestedPandasDataset, a 1-D convolutional autoencoder's
  latent vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hyrax.datasets.decals_rings import DecalsRingsDataset

REPO = Path(__file__).resolve().parents[2]
RING_SHARE = 0.05


class ThinnedRings(DecalsRingsDataset):
    """The bundled galaxies, every ring-less one and a seeded few rings: rings are 5% of the objects.
    ``thinned(seed)`` gives the same with other rings kept."""

    SEED = 7

    def __init__(self, config, data_location=None):
        super().__init__(config, data_location)
        ring = self.column("ring") == 1
        rings, others = np.flatnonzero(ring), np.flatnonzero(~ring)
        count = round(RING_SHARE * len(others) / (1 - RING_SHARE))
        kept = np.random.default_rng(self.SEED).choice(rings, count, replace=False)
        keep = np.sort(np.concatenate([others, kept]))
        self.images = self.images[keep]
        self._rows = keep
        table = {name: self.column(name)[keep] for name in self._metadata_columns}
        super(DecalsRingsDataset, self).__init__(config, data_location, table)


def thinned(seed: int) -> type:
    """ThinnedRings keeping other rings (``seed``), registered as ``ThinnedRings<seed>``."""
    if seed not in _THINNED:
        _THINNED[seed] = type(f"ThinnedRings{seed}", (ThinnedRings,), {"SEED": seed})
    return _THINNED[seed]


_THINNED: dict[int, type] = {}


def galaxy_hyrax(results: Path, epochs: int = 10, seed: int = 7, model: str = "HyraxAutoencoder"):
    """A Hyrax with ``model`` trained on the thinned galaxies and inferred on them: (h, truth)."""
    from hyrax import Hyrax
    from hyrax.verbs.demo import demo_settings

    cls = thinned(seed)
    h = Hyrax(setup_logging=False)
    for key, value in demo_settings(str(results), epochs).items():
        h.set_config(key, value)
    h.set_config("model.name", model)
    for group in ("train", "validate", "infer"):
        h.set_config(f"data_request.{group}.galaxies", {"dataset_class": cls.__name__})
    h.train()
    h.infer()
    dataset = cls(h.config)
    truth = dict(zip(dataset.column("object_id").astype(str), dataset.column("ring") == 1, strict=True))
    return h, truth


def simulate(h, truth: dict, rounds: int = 5, per_round: int = 10, top: int = 50) -> list[dict]:
    """The user labels the ``per_round`` objects h.suggest() shows a round (1 for the interesting class,
    else 0), and nothing else, then re-ranks. One row per round (round 0: before any label): "found",
    interesting objects in the top (labelled ones included); "new", those of them the user has not
    labelled; "labelled" and "labelled_interesting" so far; "labelled_ids"."""
    rows, labelled = [], set()
    for number in range(rounds + 1):
        if number:
            suggested = h.suggest(n=per_round)["object_id"].tolist()
            labelled.update(suggested)
            for value in (True, False):
                said = [i for i in suggested if truth[i] == value]
                if said:
                    h.label(said, int(value))
        ranked = h.rank(top=top)["object_id"].tolist()
        rows.append(
            {
                "round": number,
                **counted(ranked, truth, labelled),
                "labelled": len(labelled),
                "labelled_interesting": int(sum(truth[i] for i in labelled)),
                "labelled_ids": sorted(labelled),
            }
        )
    return rows


def counted(ids, truth: dict, labelled) -> dict:
    """Interesting objects among ``ids``: "found" (all) and "new" (those not in ``labelled``)."""
    return {
        "found": int(sum(truth[i] for i in ids)),
        "new": int(sum(truth[i] for i in ids if i not in labelled)),
    }


def baselines(h, truth: dict, top: int = 50, seed: int = 0) -> dict:
    """Interesting objects in the top of the outlier ranking alone, of a seeded random order, and the
    base rate's expectation; "outlier_ids" and "random_ids" to count them as :func:`counted` does."""
    outliers = h.outliers(top=top)["object_id"].tolist()
    ids = np.array(sorted(truth))
    drawn = np.random.default_rng(seed).choice(ids, top, replace=False).tolist()
    share = float(np.mean([truth[i] for i in ids]))
    return {
        "outliers": sum(truth[i] for i in outliers),
        "random": sum(truth[i] for i in drawn),
        "base": share * top,
        "share": share,
        "objects": len(ids),
        "interesting": int(sum(truth.values())),
        "outlier_ids": outliers,
        "random_ids": drawn,
    }


# ------------------------------------------------------------------------------------ CRTS transients

LIGHTCURVE = {
    "column": "lc",
    "time": "mjd",
    "value": "mag",
    "error": "magerr",
    "length": 64,
    "method": "bin",
    "span": "full",  # equal time bins: the model reads values and mask, the mask's density tells AGN apart
    "normalize": True,
}


def crts_parquet(path: Path) -> Path:
    """The 500 CRTS transients as a nested-pandas Parquet file (one row per object, light curve in lc)."""
    import nested_pandas as npd
    import pandas as pd

    folder = REPO / "tests" / "data" / "crts_transients"
    objects = pd.read_csv(folder / "objects.csv", dtype={"object_id": str}).set_index("object_id", drop=False)
    flat = pd.read_parquet(folder / "lightcurves.parquet").set_index("object_id")
    npd.NestedFrame(objects).join_nested(flat, "lc").reset_index(drop=True).to_parquet(path)
    return path


def light_curve_model():
    """A 1-D convolutional autoencoder over the binned light curve (values and mask), as a notebook
    would define it; its latent vector is 16 numbers."""
    import torch
    from torch import nn

    from hyrax.models import hyrax_model

    @hyrax_model
    class CurveAutoencoder(nn.Module):
        def __init__(self, config, data_sample=None):
            super().__init__()
            self.encode = nn.Sequential(
                nn.Conv1d(2, 16, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool1d(2),
                nn.Conv1d(16, 16, 5, padding=2),
                nn.ReLU(),
                nn.AdaptiveAvgPool1d(4),
                nn.Flatten(),
                nn.Linear(64, 16),
            )
            self.decode = nn.Linear(16, 2 * 64)

        def forward(self, x):
            return self.decode(self.encode(x)).view(x.shape)

        @staticmethod
        def prepare_inputs(batch):
            grid = batch["curves"]["lightcurve"]  # (batch, 1 band, 4 rows: time, value, error, mask, 64)
            return np.nan_to_num(np.concatenate([grid[:, :, 1], grid[:, :, 3]], axis=1)).astype(np.float32)

        def train_batch(self, x):
            self.optimizer.zero_grad()
            loss = (self(x) - x).pow(2).mean()
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.item()}

        def infer_batch(self, x):
            with torch.no_grad():
                return self.encode(x)

    return CurveAutoencoder


def crts_hyrax(results: Path, interesting: str = "AGN", epochs: int = 10):
    """A Hyrax with a 1-D autoencoder trained on the CRTS light curves and inferred on them: (h, truth)."""
    import pandas as pd

    from hyrax import Hyrax

    results.mkdir(parents=True, exist_ok=True)
    path = crts_parquet(results / "crts.parquet")
    light_curve_model()
    h = Hyrax(setup_logging=False)
    curves = {"dataset_class": "NestedPandasDataset", "data_location": str(path), "fields": ["lightcurve"]}
    for key, value in {
        "general.results_dir": str(results),
        "model.name": "CurveAutoencoder",
        "data_set.lightcurve": LIGHTCURVE,
        "data_set.seed": 42,
        "split.train": 0.8,
        "train.epochs": epochs,
        "data_loader.batch_size": 32,
        "data_loader.num_workers": 0,
        "optimizer.name": "torch.optim.Adam",
        "'torch.optim.Adam'.lr": 3e-3,
    }.items():
        h.set_config(key, value)
    for group in ("train", "validate", "infer"):
        h.set_config(f"data_request.{group}.curves", curves)
    h.train()
    h.infer()
    objects = pd.read_csv(REPO / "tests/data/crts_transients/objects.csv", dtype={"object_id": str})
    return h, dict(zip(objects["object_id"], objects["label"] == interesting, strict=True))
