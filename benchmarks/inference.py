"""Inference at scale. Prints one table.

    python benchmarks/inference.py [--objects 100000] [--repeats 3] [--threads 0]
                                   [--rss-objects 100000 1000000] [--write-rows 1000000] [--lookup-rows 1000000]

How it is fair: h.infer() and the reference (a bare ``torch.inference_mode()`` loop over the same array,
same model class and weights file, same batch size, outputs kept in a numpy array) each run in their own
fresh process for every measured run, alternating which goes first, with the same torch thread count and
the same warm-up (one forward pass on a batch of one object, which is what h.infer() does to size its
table) before the timed loop. Both are timed from the first batch to the last; the whole call (making
the data, building the model, for Hyrax also the run directory and the id index) is timed the same way
on both sides. The best of --repeats runs of each side is kept. Every Hyrax figure comes from h.infer().

- HyraxAutoencoder on in-memory 3x64x64 float32 data: h.infer() (data provider, loader, model, results
  table) against the bare loop. Hyrax's loop time is the one it records in infer_stats.toml.
- writing: 64-d vectors through h.infer() with HyraxLoopback over an in-memory 64-d dataset (the loader
  and the results table, no model work), batch 4096.
- peak RSS of a whole `hyrax infer` process at two sizes (objects made on the fly by the dataset, so
  only Hyrax's own memory can grow with N).
- look-up by object id in the results table of an infer run: median and p95 over 200 random ids.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
from _harness import peak_rss_mb, run_alternating, run_case, torch_threads

STREAMING = '''
import numpy as np
from hyrax.datasets import HyraxDataset

class StreamingVectors(HyraxDataset):
    """N objects whose 64 values are made from the index on the fly: nothing is held in memory."""

    def __len__(self):
        return self.config["data_set"]["HyraxRandomDataset"]["size"]

    def get_object_id(self, idx):
        return f"obj{idx:09d}"

    def get_vector(self, idx):
        return np.full(64, idx % 1000, dtype=np.float32)
'''


def hyrax_with(results: str, size: int, batch_size: int):
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", results)
    h.set_config("data_set.HyraxRandomDataset.size", size)
    h.set_config("data_loader.batch_size", batch_size)
    h.set_config("data_loader.num_workers", 0)
    h.set_config("infer.commit_seconds", 3600.0)
    return h


def autoencoder_hyrax(results: str, objects: int, batch_size: int, weights: str):
    """The configuration both sides use (the bare side reads only its data and model settings)."""
    h = hyrax_with(results, objects, batch_size)
    h.set_config("data_set.HyraxRandomDataset.shape", [3, 64, 64])
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
    h.set_config("infer.model_weights_file", weights)
    return h


def infer_stats(run: Path) -> dict:
    with open(run / "infer_stats.toml", "rb") as handle:
        return tomllib.load(handle)


def case_weights(directory: str) -> dict:
    """The one weights file both sides load (made in its own process, so neither side made it)."""
    import torch

    from hyrax.models.autoencoder import HyraxAutoencoder

    h = autoencoder_hyrax(directory, 1, 1, "")
    torch.manual_seed(0)
    model = HyraxAutoencoder(h.config, data_sample=np.zeros((1, 3, 64, 64), np.float32))
    return {"weights": str(model.save(Path(directory) / "weights.pth"))}


def case_hyrax(weights: str, objects: int, batch_size: int, threads: int) -> dict:
    threads = torch_threads(threads)
    with tempfile.TemporaryDirectory() as results:
        h = autoencoder_hyrax(results, objects, batch_size, weights)
        start = time.perf_counter()
        table = h.infer()
        whole = time.perf_counter() - start
        loop = infer_stats(table.data_location)["objects_per_second"]
    return {"loop": loop, "whole": len(table) / whole, "threads": threads, "rss": peak_rss_mb()}


def case_bare(weights: str, objects: int, batch_size: int, threads: int) -> dict:
    threads = torch_threads(threads)
    import torch

    from hyrax.datasets.random import HyraxRandomDataset
    from hyrax.models.autoencoder import HyraxAutoencoder

    with tempfile.TemporaryDirectory() as results:
        config = autoencoder_hyrax(results, objects, batch_size, weights).config
        start = time.perf_counter()
        images = HyraxRandomDataset(config).images  # the very array h.infer() reads
        model = HyraxAutoencoder(config, data_sample=images[:1])
        model.load(weights)
        model.eval()
        with torch.inference_mode():
            probe = model.infer_batch(torch.from_numpy(images[:1])).numpy()  # h.infer()'s warm-up
            outputs = np.empty((objects, *probe.shape[1:]), dtype=probe.dtype)
            began = time.perf_counter()
            for begin in range(0, objects, batch_size):
                batch = torch.from_numpy(images[begin : begin + batch_size])
                outputs[begin : begin + batch_size] = model.infer_batch(batch).numpy()
            end = time.perf_counter()
    return {
        "loop": objects / (end - began),
        "whole": objects / (end - start),
        "threads": threads,
        "rss": peak_rss_mb(),
    }


def case_write(rows: int) -> dict:
    """h.infer() of HyraxLoopback over rows x 64 float32 in memory: the loader and the results table."""
    from hyrax.models.loopback import HyraxLoopback

    with tempfile.TemporaryDirectory() as results:
        h = hyrax_with(results, rows, 4096)
        h.set_config("data_set.HyraxRandomDataset.shape", [64])
        h.set_config("model.name", "HyraxLoopback")
        h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
        HyraxLoopback(h.config).save(Path(results) / "w.pth")
        h.set_config("infer.model_weights_file", str(Path(results) / "w.pth"))
        start = time.perf_counter()
        table = h.infer()
        whole = time.perf_counter() - start
        loop = infer_stats(table.data_location)["objects_per_second"]
    return {"rate": loop, "whole_seconds": whole}


def case_rss(objects: int) -> dict:
    """One `hyrax infer` of HyraxLoopback over streamed 64-d vectors, in this (fresh) process."""
    from hyrax.models.loopback import HyraxLoopback

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        (work / "streaming_vectors.py").write_text(STREAMING)
        sys.path.insert(0, str(work))
        h = hyrax_with(str(work / "results"), objects, 2048)
        h.set_config("model.name", "HyraxLoopback")
        h.set_config("data_request.infer.data", {"dataset_class": "streaming_vectors.StreamingVectors"})
        HyraxLoopback(h.config).save(work / "w.pth")
        h.set_config("infer.model_weights_file", str(work / "w.pth"))
        start = time.perf_counter()
        written = len(h.infer())
        seconds = time.perf_counter() - start
    return {"rss": peak_rss_mb(), "rate": written / seconds}


def case_lookup(rows: int) -> dict:
    """ResultDataset.lookup (what h.infer() returns) on a complete infer run of ``rows`` rows."""
    from hyrax.config import ConfigManager
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultDataset, ResultWriter

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as work:
        config = ConfigManager().config
        config["general"]["results_dir"] = work
        with RunDir.create(config, "infer") as run, ResultWriter(run.path, (64,), "float32") as writer:
            for begin in range(0, rows, 100_000):
                count = min(100_000, rows - begin)
                writer.write(
                    np.char.add("obj", np.arange(begin, begin + count).astype(str)),
                    rng.random((count, 64), dtype=np.float32),
                )
        results = ResultDataset(data_location=run.path)
        results.lookup("obj0")  # opens the table and its id index: a user's first look-up pays it once
        times = []
        for index in rng.integers(0, rows, 200):
            start = time.perf_counter()
            results.lookup(f"obj{index}")
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times))]}


CASES = {
    "weights": case_weights,
    "hyrax": case_hyrax,
    "bare": case_bare,
    "write": case_write,
    "rss": case_rss,
    "lookup": case_lookup,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side; the best is kept")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)"
    )
    parser.add_argument("--rss-objects", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--write-rows", type=int, default=1_000_000)
    parser.add_argument("--lookup-rows", type=int, default=1_000_000)
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *values = args.case
        print(json.dumps(CASES[name](*(v if not v.lstrip("-").isdigit() else int(v) for v in values))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as work:
        weights = run_case(__file__, "weights", work)["weights"]
        arguments = (weights, args.objects, args.batch_size, args.threads)
        runs = run_alternating(
            __file__, {"hyrax": ("hyrax", *arguments), "bare": ("bare", *arguments)}, args.repeats
        )
    hyrax = {key: max(r[key] for r in runs["hyrax"]) for key in ("loop", "whole")}
    bare = {key: max(r[key] for r in runs["bare"]) for key in ("loop", "whole")}
    threads = runs["hyrax"][0]["threads"]
    rows.append(
        (
            f"infer HyraxAutoencoder 3x64x64, N={args.objects:,}",
            f"{hyrax['loop']:,.0f} obj/s",
            f"bare inference_mode loop {bare['loop']:,.0f} obj/s",
            f"ratio {hyrax['loop'] / bare['loop']:.3f} (>= 0.9)",
        )
    )
    rows.append(
        (
            "  whole call (data made, model built)",
            f"{hyrax['whole']:,.0f} obj/s",
            f"bare, the same from its start {bare['whole']:,.0f} obj/s",
            f"ratio {hyrax['whole'] / bare['whole']:.3f}",
        )
    )
    rows.append(
        (
            "  peak RSS",
            f"{max(r['rss'] for r in runs['hyrax']):,.0f} MB",
            f"bare {max(r['rss'] for r in runs['bare']):,.0f} MB",
            "",
        )
    )
    r = run_case(__file__, "write", args.write_rows)
    rows.append(
        (
            f"write {args.write_rows:,} 64-d vectors (loopback)",
            f"{r['rate']:,.0f} vec/s",
            f"whole h.infer() call {r['whole_seconds']:.1f} s",
            ">= 200,000 vec/s",
        )
    )
    small, large = (run_case(__file__, "rss", n) for n in args.rss_objects)
    rows.append(
        (
            f"peak RSS, hyrax infer N={args.rss_objects[0]:,}",
            f"{small['rss']:,.0f} MB",
            f"{small['rate']:,.0f} obj/s (loopback, streamed)",
            "",
        )
    )
    rows.append(
        (
            f"peak RSS, hyrax infer N={args.rss_objects[1]:,}",
            f"{large['rss']:,.0f} MB",
            f"{large['rate']:,.0f} obj/s (loopback, streamed)",
            f"{large['rss'] / small['rss'] - 1:+.1%} (within 10%)",
        )
    )
    r = run_case(__file__, "lookup", args.lookup_rows)
    rows.append(
        (
            f"look-up by id, {args.lookup_rows:,} rows",
            f"{r['median_ms']:.2f} ms median",
            f"p95 {r['p95_ms']:.2f} ms",
            "< 5 ms median",
        )
    )
    print(
        f"\n{threads} torch threads on both sides; best of {args.repeats} alternating runs of each side, "
        f"each in a fresh process; batch {args.batch_size}"
    )
    print(f"{'case':<44} {'result':>18}  {'reference':<44} {'target'}")
    for case, result, reference, target in rows:
        print(f"{case:<44} {result:>18}  {reference:<44} {target}")


if __name__ == "__main__":
    main()
