"""A HATS catalog streamed through train_stream and infer_stream sessions (LSDBStreamDataset) against
reading the same partitions with LSDB alone: rows/s and peak RSS, each in a fresh process.

    python benchmarks/hats_stream.py --rows 10_000_000          # makes the catalog once, then measures

The catalog (made here, kept in --dir): ``--rows`` objects uniform on the sphere (ra, dec), a magnitude and
an int64 id, written with ``lsdb.from_dataframe`` (about ``--partition-rows`` rows a partition). Stages:

- ``lsdb``: ``lsdb.streams.CatalogStream`` over ``lsdb.open_catalog`` (in order, one partition a chunk),
  each chunk's rows counted: the floor of any reader of these partitions;
- ``train_stream``: ``h.train_stream()`` over the catalog as ``stream_type = "infinite"`` until as many
  rows as the catalog holds were trained on (a two-number linear autoencoder of ra, dec, mag);
- ``infer_stream``: ``h.infer_stream()`` with those weights, one pass (``stream_type = "catalog"``),
  every row once, ``save_model_output`` false (the results handed to the loop, as published by default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tests.datasets.lsdb_models.ColumnEncoder"


def make_catalog(path: Path, rows: int, partition_rows: int) -> None:
    import lsdb
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(28)
    frame = pd.DataFrame(
        {
            "object_id": np.arange(rows, dtype=np.int64),
            "ra": rng.uniform(0.0, 360.0, rows),
            "dec": np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rows))),
            "mag": rng.normal(21.0, 1.5, rows).astype(np.float32),
        }
    )
    catalog = lsdb.from_dataframe(
        frame, catalog_name=path.name, ra_column="ra", dec_column="dec", partition_rows=partition_rows
    )
    catalog.write_catalog(path)


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). Not ru_maxrss: Linux carries it across exec, so
    every case would report the peak of the process that started it (the one that built the catalog)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_lsdb(catalog: Path, **_) -> dict:
    import lsdb
    from lsdb.streams import CatalogStream

    opened = time.perf_counter()
    chunks = iter(CatalogStream(lsdb.open_catalog(catalog), shuffle=False))
    rows = len(next(chunks))
    start = time.perf_counter()
    rows += sum(len(chunk) for chunk in chunks)
    return {"rows": rows, "seconds": time.perf_counter() - start, "first": start - opened}


def session_hyrax(catalog: Path, work: Path, group: str, batch_size: int, stream_type: str):
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(work / "results"))
    h.set_config("model.name", MODEL)
    h.set_config("data_loader.batch_size", batch_size)
    h.set_config("data_set.LSDBStreamDataset.stream_type", stream_type)
    h.set_config("data_set.LSDBStreamDataset.shuffle", False)
    h.set_config("data_set.LSDBStreamDataset.seed", 28)
    h.set_config("train_stream.save_weights_every", 10**9)  # on close only: the loop is what is measured
    h.config["data_request"] = {
        group: {
            "data": {
                "dataset_class": "LSDBStreamDataset",
                "data_location": str(catalog),
                "primary_id_field": "object_id",
                "fields": ["ra", "dec", "mag"],
            }
        }
    }
    return h


def run_train_stream(catalog: Path, work: Path, batch_size: int, rows: int, **_) -> dict:
    h = session_hyrax(catalog, work, "train_stream", batch_size, "infinite")
    opened, start, trained = time.perf_counter(), None, 0
    with h.train_stream() as session:
        for batch, _metrics in session:
            start = start or time.perf_counter()
            trained += len(batch["object_id"])
            if trained >= rows:
                break
        seconds = time.perf_counter() - start
    (work / "weights.txt").write_text(str(session.weights_file))
    return {"rows": trained, "seconds": seconds, "first": start - opened}


def run_infer_stream(catalog: Path, work: Path, batch_size: int, **_) -> dict:
    h = session_hyrax(catalog, work, "infer_stream", batch_size, "catalog")
    h.set_config("infer_stream.model_weights_file", (work / "weights.txt").read_text())
    opened, start, inferred = time.perf_counter(), None, 0
    with h.infer_stream() as session:
        for _batch, results in session:
            start = start or time.perf_counter()
            inferred += len(results)
        seconds = time.perf_counter() - start
    return {"rows": inferred, "seconds": seconds, "first": start - opened}


STAGES = {"lsdb": run_lsdb, "train_stream": run_train_stream, "infer_stream": run_infer_stream}


def worker(stage: str, arguments: dict) -> None:
    sys.path.insert(0, str(ROOT))
    arguments["catalog"], arguments["work"] = Path(arguments["catalog"]), Path(arguments["work"])
    result = STAGES[stage](**arguments)
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result))


def measure(stage: str, arguments: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", stage, json.dumps(arguments)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=lambda v: int(v.replace("_", "")), default=10_000_000)
    parser.add_argument("--partition-rows", type=int, default=250_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "hyrax_hats_stream")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options.worker[0], json.loads(options.worker[1]))
        return
    catalog = options.dir / f"catalog_{options.rows}"
    if not (catalog / "hats.properties").is_file():
        start = time.perf_counter()
        make_catalog(catalog, options.rows, options.partition_rows)
        print(f"made {catalog} in {time.perf_counter() - start:.0f} s", flush=True)
    import lsdb

    partitions = lsdb.open_catalog(catalog).npartitions
    with tempfile.TemporaryDirectory(dir=options.dir) as work:
        arguments = {
            "catalog": str(catalog),
            "work": work,
            "batch_size": options.batch_size,
            "rows": options.rows,
        }
        results = {stage: measure(stage, arguments) for stage in STAGES}
    print(
        f"\nHATS catalog of {options.rows:,} rows, {partitions} partitions; batch_size {options.batch_size}; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "rows/s from the first batch (or chunk) to the end; 'first s': opening (imports, catalog, model) to it"
    )
    print(f"{'stage':<14} {'rows':>12} {'first s':>8} {'seconds':>9} {'rows/s':>11} {'peak RSS MB':>12}")
    for stage, result in results.items():
        rate = result["rows"] / result["seconds"]
        print(
            f"{stage:<14} {result['rows']:>12,} {result['first']:>8.1f} {result['seconds']:>9.1f} {rate:>11,.0f} "
            f"{result['peak_rss_mb']:>12,.0f}"
        )


if __name__ == "__main__":
    main()
