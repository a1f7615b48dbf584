"""First contact with real survey data: each data kind of tests/data goes train (1 epoch) -> infer -> UMAP
-> map page with the lines a new user writes (where the data is, which fields) and every other setting at
its default. Prints one line per kind: where it failed and why, or the loss, the objects and the latent
spread. Each kind runs in a fresh process and a fresh folder.

    python benchmarks/first_contact.py                 # every kind (a few minutes)
    python benchmarks/first_contact.py radio jpeg      # some
    PYTHONPATH=/path/to/other/checkout/src python benchmarks/first_contact.py   # another version, to compare

Kinds: radio (FITS cutouts in Jy/beam with blank pixels), jpeg (Galaxy Zoo JPEGs), jpeg_as_fits (the same
given to FitsImageDataset), ztf and ztf_skip (a broker's Parquet export of real ZTF alerts, the second
with data_set.on_bad_object = "skip"), csv_lc (one CSV light curve per star), nested_lc (nested Parquet
light curves) and hats_lc (the same as a HATS catalog).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
KINDS = ("radio", "jpeg", "jpeg_as_fits", "ztf", "ztf_skip", "csv_lc", "nested_lc", "hats_lc")


def ztf_export() -> str:
    """The real alerts as a broker exports them: one Parquet file per schema version (one an alert where
    pyarrow cannot join a version's records in one table)."""
    import fastavro
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path("ztf_export")
    folder.mkdir()
    by_version = collections.defaultdict(list)
    for path in sorted((DATA / "ztf_alerts").glob("*.avro")):
        with open(path, "rb") as handle:
            for record in fastavro.reader(handle):
                by_version[str(record.get("schemavsn"))].append(record)
    for version, records in by_version.items():
        try:
            pq.write_table(pa.Table.from_pylist(records), folder / f"ztf_v{version}.parquet")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            for number, record in enumerate(records):
                pq.write_table(pa.Table.from_pylist([record]), folder / f"ztf_v{version}_{number}.parquet")
    return str(folder.resolve())


def crts_nested() -> str:
    import nested_pandas as npd
    import pandas as pd

    objects = pd.read_csv(DATA / "crts_transients" / "objects.csv", dtype={"object_id": str})
    flat = pd.read_parquet(DATA / "crts_transients" / "lightcurves.parquet").set_index("object_id")
    frame = npd.NestedFrame(objects.set_index("object_id", drop=False)).join_nested(flat, "lc")
    frame.reset_index(drop=True).to_parquet("crts.parquet")
    return str(Path("crts.parquet").resolve())


def crts_hats() -> str:
    import lsdb
    import pandas as pd

    frame = pd.read_parquet(crts_nested())
    lsdb.from_dataframe(frame, catalog_name="crts", ra_column="ra", dec_column="dec").write_catalog(
        "crts_hats"
    )
    return str(Path("crts_hats").resolve())


def request(kind: str, h) -> dict:
    """The lines a new user writes for this kind."""
    if kind == "radio":
        return {"dataset_class": "FitsImageDataset", "data_location": str(DATA / "radio_parkes_1904")}
    if kind in ("jpeg", "jpeg_as_fits"):
        dataset = "ImageFolderDataset" if kind == "jpeg" else "FitsImageDataset"
        return {
            "dataset_class": dataset,
            "data_location": str(DATA / "gz_decals_rings" / "jpeg"),
            "dataset_config": {"object_id_column_name": "iauname"},
        }
    if kind in ("ztf", "ztf_skip"):
        if kind == "ztf_skip":
            h.set_config("data_set.on_bad_object", "skip")
        return {"dataset_class": "AlertParquetDataset", "data_location": ztf_export()}
    if kind == "csv_lc":
        return {
            "dataset_class": "LightCurveDataset",
            "data_location": str(DATA / "s82_rrlyrae" / "per_object"),
        }
    h.set_config("data_set.lightcurve.column", "lc")
    if kind == "nested_lc":
        return {"dataset_class": "NestedPandasDataset", "data_location": crts_nested()}
    return {"dataset_class": "HyraxHATSDataset", "data_location": crts_hats()}


def run_kind(kind: str) -> dict:
    import numpy as np

    os.chdir(tempfile.mkdtemp(prefix=f"hyrax_first_contact_{kind}_"))
    from hyrax import Hyrax

    h = Hyrax()
    stage = "config"
    try:
        entry = request(kind, h)
        h.set_config("data_request.train.data", entry)
        h.set_config("data_request.infer.data", entry)
        h.set_config("model.name", "HyraxAutoencoder")
        h.set_config("train.epochs", 1)
        stage = "train"
        loss = h.train().final_training_metrics.get("training_loss")
        stage = "infer"
        results = h.infer()
        vectors = np.stack([np.asarray(results[i]).ravel() for i in range(len(results))])
        stage = "umap"
        h.reduce_dimensions()
        stage = "map"
        h.visualize().save("map.html")
        spread = float(vectors.std(axis=0).mean())
        return {
            "kind": kind,
            "outcome": f"runs: loss {loss:.3g}, {len(vectors)} objects, latent spread {spread:.2g}",
        }
    except Exception as error:  # the outcome is the report: where and why it failed
        text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return {"kind": kind, "outcome": f"fails at {stage}: {type(error).__name__}: {text}"}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(run_kind(sys.argv[2])))
        return
    kinds = sys.argv[1:] or KINDS
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        sys.exit(f"unknown kind(s) {', '.join(unknown)}; kinds: {', '.join(KINDS)}")
    width = max(map(len, kinds))
    for kind in kinds:
        done = subprocess.run(
            [sys.executable, __file__, "--case", kind], capture_output=True, text=True, env=os.environ
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        outcome = json.loads(lines[-1])["outcome"] if lines else f"crashed: {done.stderr.strip()[-300:]}"
        print(f"{kind:<{width}}  {outcome}", flush=True)


if __name__ == "__main__":
    main()
