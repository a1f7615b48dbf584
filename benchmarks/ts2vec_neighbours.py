"""HyraxTs2Vec on the 500 real CRTS transients (tests/data/crts_transients): do latent neighbours share
the CRTS class? Prints one table.

    python benchmarks/ts2vec_neighbours.py [--epochs 4] [--batch-size 16] [--k 5] [--seed 0]

The model is trained and inferred through the public verbs (h.train(), h.infer()) with the published
[model.HyraxTs2Vec] settings (output_dims 320, hidden_dims 64, depth 10, binomial masking, AdamW at
1e-3, max_sequence_length 256, median_mad), its field names written as a Hyrax 0.13 user writes them for
this catalog (lc_mjd, lc_mag, lc_magerr, band_field = false). What is measured: for each object, the
share of its k nearest neighbours (Euclidean, itself left out) with its class; the mean over objects,
against the chance rate (the share a random other object has: sum over classes of n_c (n_c - 1) /
(N (N - 1))), for all 500 objects (classes as labelled, uncertain ones included) and for the four large
classes (SN, CV, Blazar, AGN). The same for the untrained encoder (same settings and seed, no
training step), so that what training adds is seen apart from what the architecture gives.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "crts_transients"
MAIN_CLASSES = ("SN", "CV", "Blazar", "AGN")


def crts_parquet(path: Path) -> Path:
    """The CRTS transients as a nested-pandas Parquet file: one row per object, its light curve in lc."""
    import nested_pandas as npd

    objects = pd.read_csv(DATA / "objects.csv", dtype={"object_id": str}).set_index("object_id", drop=False)
    flat = pd.read_parquet(DATA / "lightcurves.parquet").set_index("object_id")
    npd.NestedFrame(objects).join_nested(flat, "lc").reset_index(drop=True).to_parquet(path)
    return path


def labels() -> pd.Series:
    return pd.read_csv(DATA / "objects.csv", dtype={"object_id": str}).set_index("object_id")["label"]


def neighbour_agreement(vectors: np.ndarray, classes: np.ndarray, k: int = 5) -> tuple[float, float]:
    """(mean share of each object's k nearest other objects with its class, the chance share)."""
    squared = (vectors**2).sum(axis=1)
    distance = squared[:, None] + squared[None, :] - 2 * vectors @ vectors.T
    np.fill_diagonal(distance, np.inf)
    nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]
    agreement = float((classes[nearest] == classes[:, None]).mean())
    _, counts = np.unique(classes, return_counts=True)
    count = len(classes)
    chance = float((counts * (counts - 1)).sum() / (count * (count - 1)))
    return agreement, chance


def configured_hyrax(folder: Path, epochs: int, batch_size: int, seed: int, **settings):
    """A Hyrax set up as a 0.13 user would for this catalog (train and infer on every object)."""
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(folder / "results"))
    h.set_config("data_set.cache_dir", str(folder / "cache"))
    h.set_config("data_set.seed", seed)
    h.set_config("model.name", "HyraxTs2Vec")
    published_names = {
        "time_field": "lc_mjd",
        "flux_field": "lc_mag",
        "flux_err_field": "lc_magerr",
        "band_field": False,
    }
    for key, value in {**published_names, **settings}.items():
        h.set_config(f"model.HyraxTs2Vec.{key}", value)
    h.set_config("train.epochs", epochs)
    h.set_config("data_loader.batch_size", batch_size)
    h.set_config("split.train", 1.0)
    h.set_config("split.validate", 0.0)
    entry = {
        "dataset_class": "NestedPandasDataset",
        "data_location": str(crts_parquet(folder / "crts.parquet")),
        "fields": ["lc.mjd", "lc.mag", "lc.magerr"],
    }
    for group in ("train", "infer"):
        h.set_config(f"data_request.{group}.data", dict(entry))
    return h


def untrained_vectors(h) -> tuple[np.ndarray, np.ndarray]:
    """Every object's vector from the encoder as built, before any training step (same seed)."""
    import torch

    from hyrax.datasets.provider import DataProvider
    from hyrax.models.model import to_torch
    from hyrax.training.loop import build_model

    config = h._manager.resolved()
    provider = DataProvider(config, "infer")
    torch.manual_seed(int(config["data_set"]["seed"]))
    model, _ = build_model(config, provider)
    model.eval()
    batch = provider.collate([provider[i] for i in range(len(provider))])
    with torch.no_grad():
        vectors = model.infer_batch(to_torch(type(model).prepare_inputs(batch))).numpy()
    return np.asarray(batch["object_id"]).astype(str), vectors


def measure(epochs: int, batch_size: int, k: int, seed: int, folder: Path, **settings) -> dict:
    h = configured_hyrax(folder, epochs, batch_size, seed, **settings)
    start = time.perf_counter()
    model = h.train()
    trained_s = time.perf_counter() - start
    results = h.infer()
    ids = np.asarray(results.ids()).astype(str)
    vectors = np.asarray(results[np.arange(len(results))], dtype=np.float64)
    truth = labels()
    rows = {}
    for name, (object_ids, found) in {"trained": (ids, vectors), "untrained": untrained_vectors(h)}.items():
        classes = truth.loc[object_ids].to_numpy()
        main = np.isin(classes, MAIN_CLASSES)
        rows[name] = {
            "all": neighbour_agreement(found, classes, k),
            "main": neighbour_agreement(found[main], classes[main], k),
        }
    return {
        "rows": rows,
        "objects": len(ids),
        "dims": vectors.shape[1],
        "finite": bool(np.isfinite(vectors).all()),
        "loss": float(model.final_training_metrics["loss"]),
        "train_s": trained_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        found = measure(args.epochs, args.batch_size, args.k, args.seed, Path(scratch))
    print(
        f"HyraxTs2Vec, published settings, CRTS transients: {found['objects']} objects, {found['dims']}-d vectors "
        f"(finite: {found['finite']}), {args.epochs} epochs at batch {args.batch_size}, seed {args.seed}: "
        f"final loss {found['loss']:.3f}, training {found['train_s']:.0f} s"
    )
    print(f"{'encoder':<10} {'objects':<28} {f'{args.k}-NN same class':>18} {'chance':>8} {'ratio':>7}")
    for name, row in found["rows"].items():
        for subset, label in (("all", "all 500 (every label)"), ("main", "SN, CV, Blazar, AGN")):
            agreement, chance = row[subset]
            print(f"{name:<10} {label:<28} {agreement:>18.3f} {chance:>8.3f} {agreement / chance:>7.2f}")


if __name__ == "__main__":
    main()
