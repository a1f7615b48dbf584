"""The atlas at scale: build time, disk and peak RSS per object, and tile latency from the live server.

    python benchmarks/atlas.py --n 100000,1000000[,10000000] [--work DIR] [--keep] [--requests 2000]
                               [--side 16] [--bands 1]

The data, made here (not timed as the build): a 2-D map of ``n`` objects shaped as UMAP maps are (60
Gaussian clusters of varied size and weight, seeded, plus a 3% uniform background), written as a
reduce_dimensions run (its results table and source.toml) of an inference run whose
``[data_request.infer]`` is :class:`AtlasCutouts`: ``n`` cutouts of ``--bands`` x ``--side`` x ``--side``
pixels (default 1x16x16; ``--bands 3 --side 64`` is the bundled DECaLS galaxies' size) made from the
object's index when asked (a seeded elliptical galaxy-like profile with noise; nothing held per object,
so the benchmark measures Hyrax's memory, not the dataset's).

Stages, each a fresh process (its own peak RSS, VmHWM):

  build   h.atlas(input_dir=<map>) with the default settings (16x16 cells of 32 px, WebP, "typical",
          max_level "auto"), the public path; wall time, objects/s, peak RSS, the atlas's disk use
  serve   LiveMap on the map, its server on 127.0.0.1, ``--requests`` GETs of existing tiles (image or
          cells JSON, alternately; level and tile drawn with seed 0), each on a new connection with the
          session token, as a browser's first view of each tile: median and p99 latency
  static  the same GETs of the same tiles from ``python -m http.server`` (a subprocess) serving the atlas
          folder as a static export holds it (``hyrax visualize --export``: the folder unchanged)

Growth per object (RSS) is against the smallest n of the same call. The machine's 1-minute load average
as each build starts is printed beside (its two cores may be shared), and the load averages at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BLOCK = 1_000_000
CLUSTERS = 60

try:
    from hyrax.datasets import HyraxDataset
except ImportError:  # the table printer needs no Hyrax
    HyraxDataset = object


class AtlasCutouts(HyraxDataset):
    """``n`` seeded cutouts (count, side and bands in ``<data_location>/atlas.json``), each made from its
    index on demand."""

    def __init__(self, config, data_location=None):
        info = json.loads((Path(data_location) / "atlas.json").read_text())
        self.count = int(info["n_objects"])
        side, self.bands = int(info.get("side", 16)), int(info.get("bands", 1))
        rng = np.random.default_rng(1)
        self.noise = rng.normal(0, 0.05, (1021, side, side)).astype(np.float32)
        self.band_scale = np.linspace(1.0, 0.6, self.bands, dtype=np.float32)[:, None, None]
        grid = np.arange(side, dtype=np.float32) - (side - 1) / 2
        self.yy, self.xx = np.meshgrid(grid, grid, indexing="ij")
        super().__init__(config, data_location)

    def __len__(self):
        return self.count

    def get_object_id(self, idx):
        return f"obj{int(idx):09d}"

    def get_image(self, idx):
        idx = int(idx)
        mixed = (idx * 2654435761) % 4294967296
        angle = (mixed % 360) * np.pi / 180
        axis = 0.4 + (mixed >> 9) % 60 / 100
        size = (1.2 + (mixed >> 15) % 40 / 10) * len(self.xx) / 16
        u = self.xx * np.cos(angle) + self.yy * np.sin(angle)
        v = (-self.xx * np.sin(angle) + self.yy * np.cos(angle)) / axis
        return np.exp(-(u * u + v * v) / (2 * size * size)) * self.band_scale + self.noise[idx % 1021]


# -- the data --------------------------------------------------------------------------------------------
def map_block(start: int, stop: int) -> np.ndarray:
    """The 2-D map coordinates of objects start..stop-1 (the same for any block split)."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(-10, 10, (CLUSTERS, 2))
    spreads = rng.uniform(0.1, 1.2, CLUSTERS)
    weights = rng.dirichlet(np.full(CLUSTERS, 0.7))
    block = np.random.default_rng([7, start])
    count = stop - start
    cluster = block.choice(CLUSTERS, count, p=weights)
    points = centres[cluster] + block.normal(size=(count, 2)) * spreads[cluster, None]
    background = block.random(count) < 0.03
    points[background] = block.uniform(-12, 12, (int(background.sum()), 2))
    return points.astype(np.float32)


def make_runs(work: Path, count: int, side: int = 16, bands: int = 1) -> Path:
    """An inference run of AtlasCutouts and its map; returns the map run."""
    import tomlkit

    from hyrax.config import ConfigManager
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultWriter

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "atlas.json").write_text(json.dumps({"n_objects": count, "side": side, "bands": bands}))
    manager = ConfigManager()
    manager.set_config(
        "data_request.infer.cutouts", {"dataset_class": "atlas.AtlasCutouts", "data_location": str(data)}
    )
    infer, reduce_run = work / "infer", work / "map"
    for run in (infer, reduce_run):
        with ResultWriter(run, (2,), "float32") as writer:
            for start in range(0, count, BLOCK):
                stop = min(count, start + BLOCK)
                writer.write(
                    np.char.add("obj", np.char.zfill(np.arange(start, stop).astype(str), 9)),
                    map_block(start, stop),
                )
    RunDir(infer).write_config(manager.config)
    RunDir(infer).mark_complete(skipped=0, results=count)  # as infer ends: every object, in dataset order
    (reduce_run / "source.toml").write_text(tomlkit.dumps({"infer_run": str(infer)}))
    return reduce_run


# -- stages ----------------------------------------------------------------------------------------------
def stage_build(run: Path) -> dict:
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    started = time.perf_counter()
    atlas = h.atlas(input_dir=str(run))
    seconds = time.perf_counter() - started
    disk = sum(p.stat().st_size for p in atlas.path.rglob("*") if p.is_file())
    return {
        "seconds": seconds,
        "disk": disk,
        "tiles": sum(level["tiles"] for level in atlas.manifest["levels"]),
        "max_level": atlas.max_level,
    }


def stage_serve(run: Path, requests: int) -> dict:
    import urllib.request

    from hyrax import Hyrax
    from hyrax.visualize.atlas import Atlas
    from hyrax.visualize.live import LiveMap

    h = Hyrax(setup_logging=False)
    atlas = Atlas(run / "atlas")
    levels = {z: atlas.tiles(z) for z in range(atlas.max_level + 1)}
    live = LiveMap(h.config, run)
    live.start(0, page="<html></html>")
    rng = np.random.default_rng(0)
    latencies = []
    try:
        for number in range(requests):
            z = int(rng.integers(0, atlas.max_level + 1))
            tx, ty = levels[z][int(rng.integers(0, len(levels[z])))]
            extension = "webp" if number % 2 == 0 else "json"
            url = f"{live.address}atlas/{z}/{tx}/{ty}.{extension}?token={live.token}"
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as answer:
                answer.read()
            latencies.append(time.perf_counter() - started)
    finally:
        live.stop()
    latencies = np.asarray(latencies) * 1000
    return {"median_ms": float(np.median(latencies)), "p99_ms": float(np.percentile(latencies, 99))}


def stage_static(run: Path, requests: int) -> dict:
    """Tile latency from a static web server (python -m http.server) serving the atlas folder."""
    import socket
    import urllib.request

    from hyrax.visualize.atlas import Atlas

    atlas = Atlas(run / "atlas")
    levels = {z: atlas.tiles(z) for z in range(atlas.max_level + 1)}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "-d",
        str(run / "atlas"),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rng = np.random.default_rng(0)  # the tiles the live server was asked for
    latencies = []
    try:
        for _ in range(100):  # until it answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/manifest.json", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        for number in range(requests):
            z = int(rng.integers(0, atlas.max_level + 1))
            tx, ty = levels[z][int(rng.integers(0, len(levels[z])))]
            extension = "webp" if number % 2 == 0 else "json"
            started = time.perf_counter()
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/{z}/{tx}/{ty}.{extension}", timeout=30
            ) as answer:
                answer.read()
            latencies.append(time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(10)
    latencies = np.asarray(latencies) * 1000
    return {"median_ms": float(np.median(latencies)), "p99_ms": float(np.percentile(latencies, 99))}


def run_stage(stage: str, run: Path, requests: int) -> None:
    served = {"serve": stage_serve, "static": stage_static}
    measured = stage_build(run) if stage == "build" else served[stage](run, requests)
    # this process's own peak (VmHWM): ru_maxrss is carried across exec from the process that made the data
    with open("/proc/self/status") as status:
        measured["rss"] = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps(measured))


def spawn(stage: str, run: Path, requests: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, __file__, "--stage", stage, "--run", str(run), "--requests", str(requests)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="100000,1000000", help="object counts, comma-separated")
    parser.add_argument("--work", default="/tmp/hyrax_atlas_bench")
    parser.add_argument("--keep", action="store_true", help="keep the runs made")
    parser.add_argument("--requests", type=int, default=2000, help="tile GETs timed per n")
    parser.add_argument("--side", type=int, default=16, help="cutout side in pixels")
    parser.add_argument("--bands", type=int, default=1, help="cutout bands (3: drawn in colour)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, Path(args.run), args.requests)
        return
    rows = []
    for count in (int(v) for v in args.n.split(",")):
        work = Path(args.work) / f"n{count}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.perf_counter()
        sys.path.insert(0, str(HERE))
        run = make_runs(work, count, args.side, args.bands)
        made = time.perf_counter() - started
        load = os.getloadavg()[0]
        build = spawn("build", run, args.requests)
        serve = spawn("serve", run, args.requests)
        static = spawn("static", run, args.requests)
        rows.append(
            {"n": count, "made": made, "load": load, **build, **{f"serve_{k}": v for k, v in serve.items()}}
        )
        rows[-1].update({f"static_{k}": v for k, v in static.items() if k != "rss"})
        print(json.dumps(rows[-1]), flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    smallest = rows[0]
    print(
        f"\nimages {args.bands}x{args.side}x{args.side}; load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )
    header = (
        f"{'objects':>11} {'levels':>6} {'tiles':>7} {'build s':>8} {'obj/s':>9} {'peak RSS MB':>11} "
        f"{'B/obj RSS':>9} {'disk MB':>8} {'B/obj disk':>10} {'tile p50 ms':>11} {'p99 ms':>7} {'server RSS MB':>13} "
        f"{'static p50 ms':>13} {'p99 ms':>7}"
    )
    print(header)
    for row in rows:
        growth = (
            (row["rss"] - smallest["rss"]) * 2**20 / (row["n"] - smallest["n"])
            if row is not smallest
            else float("nan")
        )
        print(
            f"{row['n']:>11,} {row['max_level'] + 1:>6} {row['tiles']:>7,} {row['seconds']:>8.1f} "
            f"{row['n'] / row['seconds']:>9,.0f} {row['rss']:>11.0f} {growth:>9.1f} {row['disk'] / 2**20:>8.1f} "
            f"{row['disk'] / row['n']:>10.1f} {row['serve_median_ms']:>11.2f} {row['serve_p99_ms']:>7.2f} "
            f"{row['serve_rss']:>13.0f} {row['static_median_ms']:>13.2f} {row['static_p99_ms']:>7.2f}"
        )


if __name__ == "__main__":
    main()
