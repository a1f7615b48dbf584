"""Training throughput: one epoch of HyraxAutoencoder through h.train() against a bare PyTorch loop.

    python benchmarks/training.py [--objects 2048] [--batch-size 64] [--repeats 3]

Same model class and settings, same in-memory 3x64x64 float32 data, same batch size and optimizer
(Adam, lr 1e-3), same torch threads (one process). The bare loop slices the array and calls
train_batch; h.train() goes through the data provider, loader, Ignite engine, checkpoint and metric
logging. Only the training epoch is timed on both sides (h.train() records it per epoch). Runs alternate
and the best of each is kept.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np


def bare_epoch(config, images: np.ndarray, batch_size: int) -> float:
    import torch

    from hyrax.plugins import MODELS

    torch.manual_seed(0)
    cls = MODELS.get("HyraxAutoencoder")
    model = cls(config, data_sample=images[:1])
    model.train()
    order = np.random.default_rng(0).permutation(len(images))
    start = time.perf_counter()
    for begin in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[np.sort(order[begin : begin + batch_size])])
        model.train_batch(batch)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from hyrax import Hyrax
    from hyrax.models import load_builtins

    load_builtins()
    with tempfile.TemporaryDirectory() as results:
        h = Hyrax(setup_logging=False)
        h.set_config("general.results_dir", results)
        h.set_config("model.name", "HyraxAutoencoder")
        h.set_config("data_set.HyraxRandomDataset.size", args.objects)
        h.set_config("data_set.HyraxRandomDataset.shape", [3, 64, 64])
        h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
        h.set_config("data_loader.batch_size", args.batch_size)
        h.set_config("data_loader.num_workers", 0)
        h.set_config("train.epochs", 1)
        from hyrax.datasets.random import HyraxRandomDataset

        images = HyraxRandomDataset(h.config).images  # the very array h.train() reads
        hyrax_rates, bare_rates = [], []
        for _ in range(args.repeats):
            bare_rates.append(bare_epoch(h.config, images, args.batch_size))
            model = h.train()
            epoch = model.training_history[-1]
            hyrax_rates.append(epoch["train_samples"] / epoch["train_seconds"])
    hyrax, bare = max(hyrax_rates), max(bare_rates)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"torch threads: {torch.get_num_threads()}, {args.objects} objects 3x64x64, batch {args.batch_size}, Adam"
    )
    print(f"{'case':<44} {'samples/s':>10} {'ratio':>7} {'target':>8} {'peak RSS':>9}")
    print(f"{'bare loop (same model, train_batch)':<44} {bare:>10.1f} {'':>7} {'':>8} {rss:>6.0f} MB")
    print(f"{'h.train(), one epoch':<44} {hyrax:>10.1f} {hyrax / bare:>7.3f} {'>= 0.95':>8} {rss:>6.0f} MB")


if __name__ == "__main__":
    main()
