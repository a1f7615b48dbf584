"""Catalog datasets at scale: a HATS catalog (HyraxHATSDataset) and a Parquet table (ParquetDataset) of N
rows made here. Prints one table.

    python benchmarks/catalogs.py                 # 10,000,000 rows (first run makes the data, minutes)
    python benchmarks/catalogs.py --rows 1000000  # a quicker look

For each: the DataProvider's build time the first time (the catalog streamed into its random-access
copy under data_set.cache_dir) and again (the copy found), the time per sample reading every row's
scalar fields in order through Hyrax's loader (``loader_from_config``, batch 1024, as train and infer
read), against two references: what a competent engineer writes to read the SOURCE catalog in order
(pyarrow's ``iter_batches`` of the Parquet file; LSDB's partitions of the HATS catalog, one pandas frame
each, cut into 1024-row numpy batches), and a bare reader of Hyrax's own copy (Lance ``take`` of the
same batches: the cost of the bytes themselves); and each process's peak RSS.

How it is fair: every measured run is a fresh process; the sides alternate which goes first over
--repeats rounds and the best of each is kept; every side reads the same first rows, each from data
the page cache holds (the source files were just written, the copy just built). The source readers
read in order only: random access, which training's shuffled reads need, is what the copy is for.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from _harness import peak_rss_mb, run_alternating, run_case

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
COLUMNS = ["object_id", "ra", "dec", "g", "r", "i", "z", "y"]
BATCH = 1024


def make_data(rows: int) -> dict:
    """A Parquet table and a HATS catalog of ``rows`` objects (ids, positions, five magnitudes)."""
    import pandas as pd

    base = DATA / f"catalog_{rows}"
    parquet, hats = base / "table.parquet", base / "hats"
    if parquet.is_file() and (hats / "collection.properties").is_file():  # LSDB writes a collection
        return {"parquet": str(parquet), "hats": str(hats)}
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "object_id": np.char.add("obj", np.arange(rows).astype(str)),
            "ra": rng.uniform(0, 360, rows),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, rows))),
            **{band: rng.normal(22, 1.5, rows).astype(np.float32) for band in "grizy"},
        }
    )
    frame.to_parquet(parquet, row_group_size=1_000_000)
    import lsdb

    shutil.rmtree(hats, ignore_errors=True)
    lsdb.from_dataframe(
        frame, catalog_name="bench", ra_column="ra", dec_column="dec", partition_rows=500_000
    ).write_catalog(hats)
    return {"parquet": str(parquet), "hats": str(hats)}


def _config(kind: str, location: str, cache: str):
    from hyrax.config import ConfigManager

    manager = ConfigManager()
    manager.set_config("data_set.cache_dir", cache)
    manager.set_config("data_loader.batch_size", BATCH)
    manager.set_config("data_loader.num_workers", 0)
    dataset = "HyraxHATSDataset" if kind == "hats" else "ParquetDataset"
    entry = {"dataset_class": dataset, "data_location": location, "fields": COLUMNS[1:]}
    manager.set_config("data_request.infer.catalog", entry)
    return manager.config


def case_build(kind: str, location: str, cache: str) -> dict:
    from hyrax.datasets.provider import DataProvider

    start = time.perf_counter()
    provider = DataProvider(_config(kind, location, cache), "infer")
    return {"seconds": time.perf_counter() - start, "rows": len(provider), "rss": peak_rss_mb()}


def case_read(side: str, kind: str, location: str, cache: str, rows: int) -> dict:
    """Read the scalar fields of the first ``rows`` rows, in order, a batch at a time."""
    from hyrax.datasets.loader import loader_from_config
    from hyrax.datasets.provider import DataProvider
    from hyrax.training.inference import RowSampler

    provider = DataProvider(_config(kind, location, cache), "infer")
    dataset = provider.datasets["catalog"]
    fields = [dataset._column_of[f] for f in COLUMNS]
    warm = np.arange(min(rows, 4 * BATCH))
    if side == "source":
        return _read_source(kind, location, rows)
    if side == "bare":
        table = dataset._dataset()

        def read(batch_rows):
            return table.take(batch_rows, columns=fields).num_rows

        read(warm)
        start = time.perf_counter()
        count = sum(read(np.arange(s, min(s + BATCH, rows))) for s in range(0, rows, BATCH))
    else:
        for _ in loader_from_config(provider.config, provider, RowSampler(warm)):
            pass
        start = time.perf_counter()
        count = 0
        for batch in loader_from_config(provider.config, provider, RowSampler(np.arange(rows))):
            count += len(batch["object_id"])
    seconds = time.perf_counter() - start
    return {"us": seconds / count * 1e6, "count": count, "rss": peak_rss_mb()}


def _read_source(kind: str, location: str, rows: int) -> dict:
    """The source catalog's columns, the first ``rows`` rows in order, as 1024-row numpy batches."""
    columns = COLUMNS
    if kind == "parquet":
        import pyarrow.parquet as pq

        def frames():
            for batch in pq.ParquetFile(location).iter_batches(batch_size=BATCH, columns=columns):
                yield {name: batch.column(name).to_numpy(zero_copy_only=False) for name in columns}
    else:
        import lsdb

        catalog = lsdb.open_catalog(location, columns=columns)

        def frames():
            for part in catalog.to_delayed():
                frame = part.compute()
                for start in range(0, len(frame), BATCH):
                    chunk = frame.iloc[start : start + BATCH]
                    yield {name: chunk[name].to_numpy() for name in columns}

    start = time.perf_counter()
    count = 0
    for batch in frames():
        count += len(batch["ra"])
        if count >= rows:
            break
    seconds = time.perf_counter() - start
    return {"us": seconds / count * 1e6, "count": count, "rss": peak_rss_mb()}


def case_make(rows: int) -> dict:
    return make_data(rows)


CASES = {"make": case_make, "build": case_build, "read": case_read}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--read-rows", type=int, default=1_000_000, help="rows read per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *values = args.case
        print(json.dumps(CASES[name](*(int(v) if v.isdigit() else v for v in values))))
        return
    print(f"preparing {args.rows:,} rows as Parquet and as a HATS catalog in {DATA} (kept)...", flush=True)
    start = time.perf_counter()
    # In its own process: Linux keeps a process's peak RSS across fork and exec, so the cases must not be
    # started from a parent that once held the whole table.
    data = run_case(__file__, "make", args.rows)
    print(f"  ready in {time.perf_counter() - start:.0f} s", flush=True)
    lines = []
    for kind in ("hats", "parquet"):
        cache = str(DATA / f"cache_{kind}_{args.rows}")
        shutil.rmtree(cache, ignore_errors=True)
        first = run_case(__file__, "build", kind, data[kind], cache)
        again = run_case(__file__, "build", kind, data[kind], cache)
        sides = {
            side: ("read", side, kind, data[kind], cache, args.read_rows)
            for side in ("source", "bare", "hyrax")
        }
        reads = run_alternating(__file__, sides, args.repeats)
        source, bare, hyrax = (min(r["us"] for r in reads[side]) for side in ("source", "bare", "hyrax"))
        lines.append(
            (
                f"{kind} {first['rows']:,} rows",
                f"{first['seconds']:.1f} s (RSS {first['rss']:,.0f} MB)",
                f"{again['seconds']:.2f} s (RSS {again['rss']:,.0f} MB)",
                f"{hyrax:.2f} us",
                f"{source:.2f} us ({max(r['rss'] for r in reads['source']):,.0f} MB)",
                f"{bare:.2f} us",
                f"{hyrax - source:+.2f} us",
                f"{max(r['rss'] for r in reads['hyrax']):,.0f} MB",
            )
        )
    header = (
        "dataset",
        "first build",
        "build again",
        "per sample (Hyrax)",
        "source reader (RSS)",
        "bare take of the copy",
        "vs source",
        "Hyrax read RSS",
    )
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    for row in [header, *lines]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(
        f"\nper sample: {args.read_rows:,} rows of {len(COLUMNS)} scalar columns in order, batch {BATCH}; best of "
        f"{args.repeats} alternating fresh processes. Source reader: pyarrow iter_batches (Parquet), LSDB "
        f"partitions (HATS), in order only. Targets: overhead <= 20 us/sample, RSS < 1 GB."
    )


if __name__ == "__main__":
    main()
