"""Outlier scores at scale on three shapes of data: time, peak RSS and recall. Prints one table.

    python benchmarks/outliers_shapes.py --n 1000000 --kind manifold,clusters,latent [--work DIR] [--keep]

The kinds (64 float32 per object):

  manifold   benchmarks/scale_user.py's vectors, the same ones benchmarks/scale.py infers: 100 clusters on
             a 10-dimensional subspace plus small noise (intrinsic dimension ~10)
  clusters   16 isotropic Gaussian clusters in 64 dimensions (centres N(0, 3^2) per coordinate, unit
             spread): intrinsic dimension 64, the worst case for any neighbour index
  latent     real latent vectors: a small convolutional autoencoder is trained (here, ~1 minute on CPU)
             on the 376 real DECaLS galaxy images bundled with Hyrax (Galaxy Zoo DECaLS, 64x64 RGB,
             averaged to 32x32), and each object is one galaxy under a seeded augmentation (flips, a
             rotation by a multiple of 90 degrees, a shift of up to 3 pixels, a brightness factor in
             [0.8, 1.25] and Gaussian pixel noise of 0.02-0.05) encoded by it. So the latents are what the
             model makes of real images, clustered around 376 galaxies as real latents cluster around kinds
             of object; the augmentations (the noise above all) give them their spread.

How it is measured: the vectors are written straight into an infer run's results table
(``ResultWriter``, as ``hyrax infer`` writes it; that write is not timed), instead of going through
``infer``, to save time: what is measured is the outliers stage alone. Then, each stage a fresh process:

  outliers   h.outliers(top=10) on that run (found through ``[results] inference_dir``), the public path
  recall     the exact k-th-neighbour distance (faiss IndexFlatL2 over every vector, streamed) of a seeded
             sample of 10,000 objects the scorer did not choose (seed 7; the scorer calibrates on seed 0);
             recall = the share of the scorer's scores within 1% of the exact one

Per kind: wall time, CPU seconds (all threads; less sensitive than the wall time to other work on shared
cores), objects/s, the outliers process's own peak RSS (VmHWM) and its growth per object
against a 200,000-object run when one is in <work> (``--n 200000`` first), the scorer's own choice
(search, nlist, nprobe, its estimated recall) and the measured recall. The machine's load average is
printed beside (its cores may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KINDS = ("manifold", "clusters", "latent")
DIMENSION = 64
BLOCK = 250_000
RECALL_SAMPLE = 10_000


# -- the data --------------------------------------------------------------------------------------------
def manifold_vectors(start: int, stop: int) -> np.ndarray:
    """scale_user.ScaleDataset's vectors of objects start..stop-1, made a block at a time."""
    from scale_user import TABLE_A, TABLE_B

    rng = np.random.default_rng(0)  # drawn in ScaleDataset.__init__'s order, so the same vectors
    basis = rng.standard_normal((10, 64)).astype(np.float32) / np.sqrt(10)
    centres = (rng.standard_normal((100, 10)).astype(np.float32) * 4) @ basis
    low_a = (0.7 * rng.standard_normal((TABLE_A, 10)).astype(np.float32)) @ basis
    low_b = (0.7 * rng.standard_normal((TABLE_B, 10)).astype(np.float32)) @ basis
    high_a = 0.07 * rng.standard_normal((TABLE_A, 64)).astype(np.float32)
    high_b = 0.07 * rng.standard_normal((TABLE_B, 64)).astype(np.float32)
    index = np.arange(start, stop, dtype=np.int64)
    a, b = index % TABLE_A, index // TABLE_A % TABLE_B
    cluster = (index * 2654435761) % 4294967296 % 100
    return centres[cluster] + low_a[a] + low_b[b] + high_a[a] + high_b[b]


def cluster_vectors(start: int, stop: int) -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((16, DIMENSION)).astype(np.float32) * 3
    rng = np.random.default_rng([1, start])
    labels = rng.integers(0, 16, stop - start)
    return centres[labels] + rng.standard_normal((stop - start, DIMENSION), dtype=np.float32)


def galaxies() -> np.ndarray:
    """The bundled DECaLS galaxies as float32 (376, 3, 32, 32) in [0, 1]."""
    from importlib.resources import files

    with np.load(files("hyrax.datasets") / "data" / "decals_rings_64.npz") as data:
        images = data["images"].astype(np.float32) / 255
    return images.reshape(len(images), 3, 32, 2, 32, 2).mean(axis=(3, 5))


def augment(images: np.ndarray, index: np.ndarray, seed: int) -> np.ndarray:
    """Galaxy ``index % 376`` under the augmentation drawn for object ``index`` (seeded)."""
    rng = np.random.default_rng([seed, int(index[0])])
    count = len(index)
    out = images[index % len(images)].copy()
    flip = rng.random(count) < 0.5
    out[flip] = out[flip, :, :, ::-1]
    turns = rng.integers(0, 4, count)
    for turn in (1, 2, 3):
        out[turns == turn] = np.rot90(out[turns == turn], turn, axes=(2, 3))
    # A shift of up to 3 pixels each way: a 32x32 window of the image padded by 3 (with its edge values).
    shifts = rng.integers(0, 7, (count, 2))
    padded = np.pad(out, ((0, 0), (0, 0), (3, 3), (3, 3)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (32, 32), axis=(2, 3))
    out = windows[np.arange(count), :, shifts[:, 0], shifts[:, 1]]
    out *= rng.uniform(0.8, 1.25, (count, 1, 1, 1)).astype(np.float32)
    out += rng.standard_normal(out.shape, dtype=np.float32) * rng.uniform(
        0.02, 0.05, (count, 1, 1, 1)
    ).astype(np.float32)
    return out


def autoencoder():
    import torch
    from torch import nn

    torch.manual_seed(0)
    encoder = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1), nn.GELU(),
        nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(), nn.Flatten(), nn.Linear(64 * 4 * 4, DIMENSION),
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.Linear(DIMENSION, 64 * 4 * 4), nn.GELU(), nn.Unflatten(1, (64, 4, 4)),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.GELU(), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.GELU(),
        nn.ConvTranspose2d(16, 3, 4, 2, 1),
    )  # fmt: skip
    return encoder, decoder


def train_encoder(path: Path, steps: int = 300) -> dict:
    """Train the autoencoder on augmented galaxies (a seed of its own, 1); save the encoder."""
    import torch

    images = galaxies()
    encoder, decoder = autoencoder()
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-3)
    began = time.perf_counter()
    for step in range(steps):
        index = np.random.default_rng([2, step]).integers(0, 10**9, 64)
        batch = torch.from_numpy(augment(images, index, seed=1))
        loss = torch.nn.functional.mse_loss(decoder(encoder(batch)), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(encoder.state_dict(), path)
    return {"steps": steps, "loss": float(loss.detach()), "seconds": time.perf_counter() - began}


class LatentVectors:
    def __init__(self, path: Path):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self.images = galaxies()
        self.encoder = autoencoder()[0]
        self.encoder.load_state_dict(torch.load(path, weights_only=True))
        self.encoder.eval()

    def __call__(self, start: int, stop: int) -> np.ndarray:
        import torch

        batch = augment(self.images, np.arange(start, stop), seed=3)
        with torch.no_grad():
            return np.concatenate(
                [
                    self.encoder(torch.from_numpy(batch[i : i + 8192])).numpy()
                    for i in range(0, len(batch), 8192)
                ]
            )


def write_run(work: Path, kind: str, count: int) -> Path:
    """An infer run of ``count`` vectors of ``kind`` (the results table as `hyrax infer` writes it)."""
    from hyrax.results.store import ResultWriter

    run = work / f"{kind}-{count}"
    if (run / "made.json").is_file():
        return run
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    made = {}
    if kind == "latent":
        weights = work / "encoder.pt"
        if not weights.is_file():
            made["training"] = train_encoder(weights)
        make = LatentVectors(weights)
    else:
        make = manifold_vectors if kind == "manifold" else cluster_vectors
    began = time.perf_counter()
    with ResultWriter(run, (DIMENSION,), "float32") as writer:
        for start in range(0, count, BLOCK):
            stop = min(start + BLOCK, count)
            writer.write(np.char.add("obj", np.arange(start, stop).astype(str)), make(start, stop))
    made["seconds"] = time.perf_counter() - began
    (run / "made.json").write_text(json.dumps(made))
    return run


# -- stages, each in a fresh process ---------------------------------------------------------------------
def stage_outliers(run: Path) -> dict:
    from hyrax import Hyrax
    from hyrax.vector_db.outliers import scores_metadata

    h = Hyrax(setup_logging=False)
    h.set_config("results.inference_dir", str(run))
    h.set_config("general.results_dir", str(run.parent / "results"))
    if os.environ.get("OUTLIERS_SHAPES_BUDGET"):
        h.set_config("outliers.time_budget_minutes", float(os.environ["OUTLIERS_SHAPES_BUDGET"]))
    began = time.perf_counter()
    h.outliers(top=10)
    return {"wall": time.perf_counter() - began, "how": scores_metadata(run)}


def stage_recall(run: Path) -> dict:
    """Exact k-th-neighbour distances of a seeded sample, over every vector, a block at a time."""
    import faiss
    import lance

    from hyrax.results.store import ResultDataset
    from hyrax.vector_db.outliers import scores_path

    k = int(lance.dataset(str(scores_path(run))).schema.metadata[b"k"])
    results = ResultDataset(data_location=run)
    rows = np.sort(
        np.random.default_rng(7).choice(len(results), min(RECALL_SAMPLE, len(results)), replace=False)
    )
    _, queries = results.take(rows)
    queries = np.ascontiguousarray(queries.reshape(len(rows), -1), dtype=np.float32)
    best = np.full((len(rows), k + 1), np.inf, dtype=np.float32)
    for _, block in results.iter_batches(262_144):
        distances, _ = faiss.knn(
            queries, np.ascontiguousarray(block, dtype=np.float32), min(k + 1, len(block))
        )
        best = np.sort(np.concatenate([best, distances], axis=1), axis=1)[:, : k + 1]
    exact = np.sqrt(np.maximum(best[:, k], 0))
    scores = lance.dataset(str(scores_path(run))).take(rows, columns=["outlier_score"]).column(0).to_numpy()
    within = np.abs(scores - exact) <= 0.01 * np.maximum(exact, 1e-12)
    top = max(1, len(rows) // 100)
    overlap = len(set(np.argsort(-exact)[:top]) & set(np.argsort(-scores)[:top])) / top
    return {
        "recall": float(within.mean()),
        "top_overlap": overlap,
        "median_ratio": float(np.median(scores / exact)),
    }


def run_stage(stage: str, run: Path) -> None:
    measured = {"outliers": stage_outliers, "recall": stage_recall}[stage](run)
    # this process's own peak (VmHWM): ru_maxrss is carried across exec, so it would report the peak of the
    # process that wrote the vectors
    with open("/proc/self/status") as status:
        measured["rss"] = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    # CPU seconds (all threads, user + system), less sensitive than the wall time to other processes on
    # shared cores; the load average at the stage's end beside the one at its start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    measured["cpu"] = usage.ru_utime + usage.ru_stime
    measured["load_end"] = f"{os.getloadavg()[0]:.1f}"
    print(json.dumps(measured))


def spawn(stage: str, run: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--run", str(run)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise SystemExit(f"stage {stage} on {run} failed (exit {done.returncode}):\n{done.stderr[-5000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


HEADER = (
    "| kind | objects | outliers s | outliers CPU s | objects/s | peak RSS MB | B/object vs 200k | search (nlist, nprobe) "
    "| estimated recall | recall (within 1%) | top-1% overlap | load average |"
)


def row(kind: str, count: int, m: dict, r: dict, growth: str, load: str) -> str:
    how = m["how"]
    search = how.get("search", "?")
    if search == "graph":
        search += f" (links {how.get('links')}, effort {how.get('effort')})"
    elif search != "exact":
        search += f" ({how.get('nlist')}, {how.get('nprobe')})"
    if how.get("time_budget_s"):
        search += f"; budget {float(how['time_budget_s']) / 60:g} min, predicted {float(how['predicted_s']) / 60:.0f} min"
    return (
        f"| {kind} | {count:,} | {m['wall']:.1f} | {m.get('cpu', float('nan')):.0f} | {count / m['wall']:,.0f} | {m['rss']:.0f} | {growth} | {search} "
        f"| {how.get('estimated_recall', '-')} | {r['recall']:.4f} | {r['top_overlap']:.3f} | {load} -> {m.get('load_end', '?')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, help="number of objects")
    parser.add_argument("--kind", default=",".join(KINDS), help="comma-separated, of " + ",".join(KINDS))
    parser.add_argument("--work", type=Path, default=HERE / ".data" / "outliers_shapes")
    parser.add_argument("--keep", action="store_true", help="keep the runs (the 200k runs are always kept)")
    parser.add_argument(
        "--budget", type=float, help="outliers.time_budget_minutes (default: false, no limit)"
    )
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.run)
        return
    if not args.n:
        parser.error("--n is required")
    kinds = [kind for kind in args.kind.split(",") if kind]
    if set(kinds) - set(KINDS):
        parser.error(f"--kind: one or more of {', '.join(KINDS)}")
    sys.path.insert(0, str(HERE))
    if args.budget:
        os.environ["OUTLIERS_SHAPES_BUDGET"] = str(args.budget)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"N = {args.n:,}, {os.cpu_count()} cores", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for kind in kinds:
        run = write_run(work, kind, args.n)
        shutil.rmtree(run / "results", ignore_errors=True)
        (run / "lance_db" / "outliers.lance").exists() and shutil.rmtree(run / "lance_db" / "outliers.lance")
        load = "{:.1f}/{:.1f}".format(*os.getloadavg()[:2])
        measured = spawn("outliers", run)
        recall = spawn("recall", run)
        base = work / f"results-{kind}-200000.json"
        growth = "-"
        if base.is_file() and args.n > 200_000:
            before = json.loads(base.read_text())["rss"]
            growth = f"{(measured['rss'] - before) * 2**20 / (args.n - 200_000):+.0f}"
        budget = f"-budget{args.budget:g}" if args.budget else ""
        (work / f"results-{kind}-{args.n}{budget}.json").write_text(
            # the outliers stage's figures win: the recall stage's own rss and cpu are kept apart
            json.dumps(
                {**recall, "recall_rss": recall.get("rss"), "recall_cpu": recall.get("cpu"), **measured}
            )
        )
        lines.append(row(kind, args.n, measured, recall, growth, load))
        print(lines[-1], flush=True)
        if not args.keep and args.n != 200_000:
            shutil.rmtree(run)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
