"""Inference at scale. Prints one table.

    python benchmarks/inference.py [--objects 100000] [--rss-objects 100000 1000000] [--lookup-rows 1000000]

- HyraxAutoencoder on in-memory 3x64x64 float32 data: h.infer() (data provider, loader, model, results
  table) against a bare torch.no_grad() loop over the same array with the same model and batch size (the
  bare loop keeps no outputs). Both timed from first batch to last (h.infer() records it in
  infer_stats.toml), in one process; the whole h.infer() call, which also makes the in-memory data and
  builds the model and the id index, is shown too.
- result writing: 64-d float32 vectors with string ids into the Lance table, in batches of 512.
- peak RSS of a whole `hyrax infer` process at two sizes (objects made on the fly by the dataset, so
  only Hyrax's own memory can grow with N).
- look-up by object id in a 1,000,000-row table: median and p95 over 200 random ids.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import peak_rss_mb, run_case

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


def hyrax_config(h, results: str, size: int, batch_size: int) -> None:
    h.set_config("general.results_dir", results)
    h.set_config("data_set.HyraxRandomDataset.size", size)
    h.set_config("data_loader.batch_size", batch_size)
    h.set_config("data_loader.num_workers", 0)
    h.set_config("infer.commit_seconds", 3600.0)


def case_throughput(objects: int, batch_size: int) -> dict:
    import torch

    from hyrax import Hyrax
    from hyrax.datasets.random import HyraxRandomDataset
    from hyrax.models.autoencoder import HyraxAutoencoder

    with tempfile.TemporaryDirectory() as results:
        h = Hyrax(setup_logging=False)
        hyrax_config(h, results, objects, batch_size)
        h.set_config("data_set.HyraxRandomDataset.shape", [3, 64, 64])
        h.set_config("model.name", "HyraxAutoencoder")
        h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
        torch.manual_seed(0)
        model = HyraxAutoencoder(h.config, data_sample=np.zeros((1, 3, 64, 64), np.float32))
        weights = Path(results) / "weights.pth"
        model.save(weights)
        h.set_config("infer.model_weights_file", str(weights))
        images = HyraxRandomDataset(h.config).images
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            for begin in range(0, objects, batch_size):
                model.infer_batch(torch.from_numpy(images[begin : begin + batch_size]))
        bare = objects / (time.perf_counter() - start)
        del images
        start = time.perf_counter()
        results = h.infer()
        whole = len(results) / (time.perf_counter() - start)
        import tomllib

        with open(results.data_location / "infer_stats.toml", "rb") as handle:
            hyrax = tomllib.load(handle)["objects_per_second"]
    return {"bare": bare, "hyrax": hyrax, "whole": whole, "threads": torch.get_num_threads()}


def case_write(rows: int) -> dict:
    from hyrax.results.store import ResultWriter

    rng = np.random.default_rng(0)
    vectors = rng.random((rows, 64), dtype=np.float32)
    ids = np.char.add("obj", np.arange(rows).astype(str))
    with tempfile.TemporaryDirectory() as run:
        writer = ResultWriter(run, (64,), "float32")
        start = time.perf_counter()
        for begin in range(0, rows, 512):
            writer.write(ids[begin : begin + 512], vectors[begin : begin + 512])
        writer.flush()
        write = rows / (time.perf_counter() - start)
        start = time.perf_counter()
        writer.close()  # builds the id index
        index_seconds = time.perf_counter() - start
    return {"rate": write, "index_seconds": index_seconds}


def case_rss(objects: int) -> dict:
    """One `hyrax infer` of HyraxLoopback over streamed 64-d vectors, in this (fresh) process."""
    from hyrax import Hyrax
    from hyrax.models.loopback import HyraxLoopback

    work = Path(tempfile.mkdtemp())
    (work / "streaming_vectors.py").write_text(STREAMING)
    sys.path.insert(0, str(work))
    h = Hyrax(setup_logging=False)
    hyrax_config(h, str(work / "results"), objects, 2048)
    h.set_config("model.name", "HyraxLoopback")
    h.set_config("data_request.infer.data", {"dataset_class": "streaming_vectors.StreamingVectors"})
    HyraxLoopback(h.config).save(work / "w.pth")
    h.set_config("infer.model_weights_file", str(work / "w.pth"))
    start = time.perf_counter()
    written = len(h.infer())
    seconds = time.perf_counter() - start
    return {"rss": peak_rss_mb(), "rate": written / seconds}


def case_lookup(rows: int) -> dict:
    from hyrax.results.store import ResultDataset, ResultWriter

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as run:
        with ResultWriter(run, (64,), "float32") as writer:
            for begin in range(0, rows, 100_000):
                count = min(100_000, rows - begin)
                writer.write(
                    np.char.add("obj", np.arange(begin, begin + count).astype(str)),
                    rng.random((count, 64), dtype=np.float32),
                )
        results = ResultDataset(data_location=run)
        results.lookup("obj0")
        times = []
        for index in rng.integers(0, rows, 200):
            start = time.perf_counter()
            results.lookup(f"obj{index}")
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times))]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rss-objects", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--write-rows", type=int, default=1_000_000)
    parser.add_argument("--lookup-rows", type=int, default=1_000_000)
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *values = args.case
        function = {
            "throughput": case_throughput,
            "write": case_write,
            "rss": case_rss,
            "lookup": case_lookup,
        }[name]
        print(json.dumps(function(*map(int, values))))
        return
    rows = []
    r = run_case(__file__, "throughput", args.objects, args.batch_size)
    rows.append(
        (
            f"infer HyraxAutoencoder 3x64x64, N={args.objects:,}",
            f"{r['hyrax']:,.0f} obj/s",
            f"bare no_grad loop {r['bare']:,.0f} obj/s ({r['threads']} threads)",
            f"ratio {r['hyrax'] / r['bare']:.3f} (>= 0.9)",
        )
    )
    rows.append(
        (
            "  whole h.infer() call (data made, model built)",
            f"{r['whole']:,.0f} obj/s",
            "",
            f"ratio {r['whole'] / r['bare']:.3f}",
        )
    )
    r = run_case(__file__, "write", args.write_rows)
    rows.append(
        (
            f"write {args.write_rows:,} 64-d vectors",
            f"{r['rate']:,.0f} vec/s",
            f"id index built in {r['index_seconds']:.2f} s",
            ">= 200,000 vec/s",
        )
    )
    small, large = (run_case(__file__, "rss", n) for n in args.rss_objects)
    rows.append(
        (
            f"peak RSS, hyrax infer N={args.rss_objects[0]:,}",
            f"{small['rss']:,.0f} MB",
            f"{small['rate']:,.0f} obj/s (loopback)",
            "",
        )
    )
    rows.append(
        (
            f"peak RSS, hyrax infer N={args.rss_objects[1]:,}",
            f"{large['rss']:,.0f} MB",
            f"{large['rate']:,.0f} obj/s (loopback)",
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
    print(f"\n{'case':<44} {'result':>18}  {'reference':<44} {'target'}")
    for case, result, reference, target in rows:
        print(f"{case:<44} {result:>18}  {reference:<44} {target}")


if __name__ == "__main__":
    main()
