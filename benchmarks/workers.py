"""Where DataLoader workers pay: h.infer() with data_loader.num_workers 0 against 2. Prints one table.

    python benchmarks/workers.py [--sizes 1000 10000 100000] [--fits-sizes 1000 10000] [--repeats 2]

Each run is h.infer() of HyraxAutoencoder (1x32x32, batch 128, one weights file both sides load) in a
fresh process, the two worker counts alternating. Two datasets: ``numpy`` (HyraxRandomDataset in memory:
a cheap get) and ``fits`` (every get opens a FITS scene from tests/data/hsc_cosmos_scenes with astropy
and cuts 32x32 out of it). Each run also reports what ``data_loader.num_workers = "auto"`` estimates
(seconds a get, timed on a few objects, times N) and chooses, so the rule can be read off the table: the
workers' saving (or cost) against the estimated reading time. The worker start-up cost is the loss of
2 workers where reading is cheapest and N smallest (numpy, 1,000); what they add per object, the loss
per object where reading is cheap and N larger (numpy, 10,000).

The load average is printed: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import run_alternating, run_case

SCENES = Path(__file__).resolve().parent.parent / "tests" / "data" / "hsc_cosmos_scenes"

FITS_MODULE = '''
import numpy as np
from astropy.io import fits
from hyrax.datasets import HyraxDataset

SCENES = {scenes!r}

class FitsCutouts(HyraxDataset):
    """N objects, each a 32x32 cut of a FITS scene opened and read at every get."""

    def __len__(self):
        return self.config["data_set"]["HyraxRandomDataset"]["size"]

    def get_object_id(self, idx):
        return f"obj{{idx:09d}}"

    def get_image(self, idx):
        with fits.open(SCENES[idx % len(SCENES)], memmap=False) as hdus:
            data = next(h.data for h in hdus if h.data is not None)
        band = data.reshape(-1, *data.shape[-2:])[0]  # the first band
        y, x = (idx * 7) % (band.shape[0] - 32), (idx * 13) % (band.shape[1] - 32)
        return np.asarray(band[y : y + 32, x : x + 32], dtype=np.float32)[np.newaxis]
'''


def configured(work: Path, kind: str, objects: int, workers: int, weights: str):
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(work / "results"))
    h.set_config("data_set.HyraxRandomDataset.size", objects)
    h.set_config("data_set.HyraxRandomDataset.shape", [1, 32, 32])
    h.set_config("data_loader.batch_size", 128)
    h.set_config("data_loader.num_workers", workers)
    h.set_config("model.name", "HyraxAutoencoder")
    if kind == "fits":
        (work / "fits_cutouts.py").write_text(
            FITS_MODULE.format(scenes=[str(p) for p in sorted(SCENES.glob("*.fits"))])
        )
        sys.path.insert(0, str(work))
        h.set_config("data_request.infer.data", {"dataset_class": "fits_cutouts.FitsCutouts"})
    else:
        h.set_config("data_request.infer.data", {"dataset_class": "HyraxRandomDataset"})
    if weights:
        h.set_config("infer.model_weights_file", weights)
    return h


def case_weights(directory: str) -> dict:
    import torch

    from hyrax.models.autoencoder import HyraxAutoencoder

    h = configured(Path(directory), "numpy", 1, 0, "")
    torch.manual_seed(0)
    model = HyraxAutoencoder(h.config, data_sample=np.zeros((1, 1, 32, 32), np.float32))
    return {"weights": str(model.save(Path(directory) / "weights.pth"))}


def case_infer(weights: str, kind: str, objects: int, workers: str) -> dict:
    from hyrax.datasets import loader
    from hyrax.datasets.provider import DataProvider

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        h = configured(work, kind, int(objects), int(workers), weights)
        # what "auto" would estimate, on a provider of its own (so the timed run reads afresh)
        per_object = loader.seconds_per_object(DataProvider(h.config, "infer"))
        start = time.perf_counter()
        h.infer()
        seconds = time.perf_counter() - start
    estimate = per_object * int(objects)
    return {"seconds": seconds, "per_object": per_object, "estimate": estimate}


CASES = {"weights": case_weights, "infer": case_infer}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--fits-sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--case", nargs="*")
    args = parser.parse_args()
    if args.case:
        import json

        name, *rest = args.case
        print(json.dumps(CASES[name](*rest)))
        return

    from hyrax.datasets.loader import AUTO_WORKERS, WORKER_OBJECT_SECONDS, WORKER_START_SECONDS

    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        weights = run_case(__file__, "weights", directory)["weights"]
        plan = [("numpy", n) for n in args.sizes] + [("fits", n) for n in args.fits_sizes]
        for kind, objects in plan:
            sides = {w: ("infer", weights, kind, objects, w) for w in (0, AUTO_WORKERS)}
            runs = run_alternating(__file__, sides, args.repeats)
            none = [r["seconds"] for r in runs[0]]
            some = [r["seconds"] for r in runs[AUTO_WORKERS]]
            estimate = statistics.median(r["estimate"] for side in runs.values() for r in side)
            saving = min(none) - min(some)
            rows.append((kind, objects, estimate, min(none), min(some), saving, os.getloadavg()[0]))
            print(f"  {kind} {objects}: 0 workers {none}, {AUTO_WORKERS} workers {some}", flush=True)
    print()
    print(
        f"{'dataset':8} {'objects':>8} {'est. read s':>11} {'0 workers s':>11} {AUTO_WORKERS} workers s "
        f"{'saving s':>9} {'auto picks':>10} {'right?':>6} {'load':>5}"
    )
    for kind, objects, estimate, none, some, saving, load in rows:
        picks = AUTO_WORKERS if estimate - objects * WORKER_OBJECT_SECONDS > WORKER_START_SECONDS else 0
        right = (picks > 0) == (saving > 0)
        print(
            f"{kind:8} {objects:>8} {estimate:>11.3f} {none:>11.2f} {some:>11.2f} {saving:>9.2f} "
            f"{picks:>10} {'yes' if right else 'NO':>6} {load:>5.1f}"
        )
    print(
        f'\n"auto" rule: {AUTO_WORKERS} workers when objects x (read s - {WORKER_OBJECT_SECONDS}) > '
        f"{WORKER_START_SECONDS} s; times: the least of the runs"
    )


if __name__ == "__main__":
    main()
