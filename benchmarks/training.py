"""Training throughput: one epoch of HyraxAutoencoder through h.train() against a bare PyTorch loop.

    python benchmarks/training.py [--objects 2048] [--batch-size 64] [--repeats 3] [--threads 0]

How it is fair: both sides train the same model class with the same settings, on the same in-memory
3x64x64 float32 array (HyraxRandomDataset's, made the same way on both sides), with the same batch size,
optimizer (Adam, lr 1e-3, set in the config both read) and shuffled order without repeats. Each measured run is a
fresh process, the sides alternate which goes first, both set the same torch thread count, and both get
the same warm-up before the epoch: the one no_grad forward pass on a batch of one object that h.train()
makes to check the model's contract. Only the training epoch is timed on both sides (h.train() records
it per epoch; the bare loop times its own); the whole h.train() call (data, model, run directory,
tracking, checkpoint) is shown beside the bare loop's whole run. The best of --repeats runs of each
side is kept. The bare loop slices the array and calls train_batch; h.train() goes through the data
provider, loader, Ignite engine, checkpoint and metric logging.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from _harness import peak_rss_mb, run_alternating, torch_threads


def training_hyrax(results: str, objects: int, batch_size: int):
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", results)
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("data_set.HyraxRandomDataset.size", objects)
    h.set_config("data_set.HyraxRandomDataset.shape", [3, 64, 64])
    h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("data_loader.batch_size", batch_size)
    h.set_config("data_loader.num_workers", 0)
    h.set_config("train.epochs", 1)
    h.set_config("optimizer.name", "torch.optim.Adam")  # as measured (the default is the published SGD)
    h.set_config("'torch.optim.Adam'.lr", 1e-3)
    return h


def case_hyrax(objects: int, batch_size: int, threads: int) -> dict:
    threads = torch_threads(threads)
    with tempfile.TemporaryDirectory() as results:
        h = training_hyrax(results, objects, batch_size)
        start = time.perf_counter()
        model = h.train()
        whole = time.perf_counter() - start
    epoch = model.training_history[-1]
    return {
        "epoch": epoch["train_samples"] / epoch["train_seconds"],
        "whole": whole,
        "threads": threads,
        "rss": peak_rss_mb(),
    }


def case_bare(objects: int, batch_size: int, threads: int) -> dict:
    threads = torch_threads(threads)
    import torch

    from hyrax.datasets.random import HyraxRandomDataset
    from hyrax.models.autoencoder import HyraxAutoencoder

    with tempfile.TemporaryDirectory() as results:
        config = training_hyrax(results, objects, batch_size).config
        start = time.perf_counter()
        images = HyraxRandomDataset(config).images  # the very array h.train() reads
        torch.manual_seed(0)
        model = HyraxAutoencoder(config, data_sample=images[:1])
        model.eval()
        with torch.no_grad():  # h.train()'s contract check: one forward pass on one object
            model.infer_batch(torch.from_numpy(images[:1]))
        model.train()
        order = np.random.default_rng(0).permutation(len(images))
        began = time.perf_counter()
        for begin in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[np.sort(order[begin : begin + batch_size])])
            model.train_batch(batch)
        end = time.perf_counter()
    return {"epoch": objects / (end - began), "whole": end - start, "threads": threads, "rss": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side; the best is kept")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)"
    )
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *values = args.case
        print(json.dumps({"hyrax": case_hyrax, "bare": case_bare}[name](*map(int, values))))
        return
    arguments = (args.objects, args.batch_size, args.threads)
    runs = run_alternating(
        __file__, {"bare": ("bare", *arguments), "hyrax": ("hyrax", *arguments)}, args.repeats
    )
    best = {side: max(r["epoch"] for r in runs[side]) for side in runs}
    whole = {side: min(r["whole"] for r in runs[side]) for side in runs}
    rss = {side: max(r["rss"] for r in runs[side]) for side in runs}
    print(
        f"\ntorch threads: {runs['hyrax'][0]['threads']} on both sides, {args.objects} objects 3x64x64, "
        f"batch {args.batch_size}, Adam; best of {args.repeats} alternating runs of each side, each in a "
        f"fresh process"
    )
    print(f"{'case':<40} {'samples/s':>10} {'ratio':>7} {'target':>8} {'whole run':>10} {'peak RSS':>9}")
    print(
        f"{'bare loop (same model, train_batch)':<40} {best['bare']:>10.1f} {'':>7} {'':>8} "
        f"{whole['bare']:>8.1f} s {rss['bare']:>6.0f} MB"
    )
    print(
        f"{'h.train(), one epoch':<40} {best['hyrax']:>10.1f} {best['hyrax'] / best['bare']:>7.3f} "
        f"{'>= 0.95':>8} {whole['hyrax']:>8.1f} s {rss['hyrax']:>6.0f} MB"
    )


if __name__ == "__main__":
    main()
