"""The whole pipeline at survey scale, each stage in its own process. Prints one table.

    python benchmarks/scale.py --n 1000000 [--stages infer,index,...] [--work DIR] [--keep]

What a user does, through the public API (``Hyrax(config_file=...)`` and its verbs, and ``hyrax
visualize`` on the command line), on a user-written streaming dataset of 64 numbers per object
(benchmarks/scale_user.py: clustered like latent vectors) joined by id to a Parquet catalog of ra, dec
and mag, with the HyraxLoopback model (so the vectors are the data and the model costs nothing):

  train      1 epoch on a 20,000-object subset
  infer      every object -> results.lance
  index      save_to_database (lance: IVF-PQ with exact re-ranking)
  umap, pca  reduce_dimensions (fit on a sample, place every object)
  outliers   outliers(top=10): k-th-neighbour distance of every object
  recall     that score against exact search (faiss IndexFlatL2 over every vector, streamed) for a
             seeded sample of 10,000 objects: the share of scores within 1% of the exact one
  map        `hyrax visualize` served on 127.0.0.1: load time, then HTTP requests as the page makes them:
             viewport (whole map, zoomed), thumbnails, neighbours, selections (box, lasso)
  lookup     h.lookup(id) and ResultDataset.lookup for random ids

Per stage: wall time, objects/s, the peak RSS of the stage's process (ru_maxrss; DataLoader workers
separately), and bytes on disk per object of what it wrote. Request latencies are medians over distinct
random objects (no request repeats, so no cache answers it).

How it is fair: every stage is a fresh process started the same way (no warm caches in Python; the
operating system's page cache holds whatever the previous stage left, as it would for a user); it goes
through the same calls a user makes; queries for neighbours and look-ups are objects drawn at random,
and the recall is measured against exact search, not against the index itself. The data are made
before the first stage and not timed. Results are kept in <work>/results-<stage>.json so that a table
at another N can be compared (scripts: docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STAGES = ["train", "infer", "index", "umap", "pca", "outliers", "recall", "map", "lookup"]
TRAIN_OBJECTS = 20_000
RECALL_SAMPLE = 10_000


# -- set-up --------------------------------------------------------------------------------------------
def config_text(work: Path) -> str:
    return f"""
[general]
results_dir = "{work / "results"}"
log_level = "warning"

[model]
name = "HyraxLoopback"

[train]
epochs = 1

[data_set]
seed = 0
cache_dir = "{work / "cache"}"

[data_loader]
batch_size = 1024

[data_request.train.data]
dataset_class = "scale_user.ScaleDataset"
data_location = "{work / "train"}"

[data_request.infer.data]
dataset_class = "scale_user.ScaleDataset"
data_location = "{work / "data"}"
primary_id_field = "object_id"

[data_request.infer.catalog]
dataset_class = "ParquetDataset"
data_location = "{work / "catalog.parquet"}"
join_field = "object_id"

[visualize]
color_column = "mag"
"""


def make_data(work: Path, count: int) -> None:
    from scale_user import write_catalog

    for name, size in (("data", count), ("train", min(count, TRAIN_OBJECTS))):
        (work / name).mkdir(parents=True, exist_ok=True)
        (work / name / "scale.json").write_text(json.dumps({"n_objects": size, "seed": 0}))
    if not (work / "catalog.parquet").is_file():
        write_catalog(work / "catalog.parquet", count)
    (work / "config.toml").write_text(config_text(work))


# -- stages (each runs in a fresh process: `scale.py --stage NAME --work DIR`) ----------------------------
def hyrax(work: Path):
    from hyrax import Hyrax

    return Hyrax(config_file=work / "config.toml")


def latest(work: Path, verb: str) -> Path:
    from hyrax.results.run_dir import find_latest_run

    return find_latest_run(work / "results", verb)


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def random_ids(work: Path, count: int, seed: int) -> list[str]:
    from scale_user import object_id

    size = json.loads((work / "data" / "scale.json").read_text())["n_objects"]
    rows = np.random.default_rng(seed).choice(size, count, replace=False)
    return [str(i) for i in object_id(rows)]


def stage_train(work: Path) -> dict:
    hyrax(work).train()
    return {"objects": TRAIN_OBJECTS, "disk": disk_bytes(latest(work, "train"))}


def stage_infer(work: Path) -> dict:
    results = hyrax(work).infer()
    return {"objects": len(results), "disk": disk_bytes(results.table_path)}


def stage_index(work: Path) -> dict:
    h = hyrax(work)
    run = latest(work, "infer")
    before = disk_bytes(run / "lance_db")
    h.save_to_database()
    return {"disk": disk_bytes(run / "lance_db") - before + disk_bytes(run / "vector_db")}


def stage_reduce(work: Path, name: str) -> dict:
    h = hyrax(work)
    h.set_config("reduce_dimensions.name", name)
    coordinates = h.reduce_dimensions()
    return {"objects": len(coordinates), "disk": disk_bytes(coordinates.data_location)}


def stage_outliers(work: Path) -> dict:
    h = hyrax(work)
    top = h.outliers(top=10)
    from hyrax.vector_db.outliers import scores_path

    return {
        "disk": disk_bytes(scores_path(latest(work, "infer"))),
        "note": f"top: {top['object_id'].iloc[0]} ({top['outlier_score'].iloc[0]:.3f})",
    }


def stage_recall(work: Path) -> dict:
    """Exact k-th-neighbour distances of a seeded sample, over every vector, a block at a time."""
    import faiss
    import lance

    from hyrax.config import ConfigManager
    from hyrax.results.store import ResultDataset
    from hyrax.vector_db.outliers import scores_path

    run = latest(work, "infer")
    k = int(ConfigManager(work / "config.toml").config["outliers"]["k"])
    results = ResultDataset(data_location=run)
    rows = np.sort(
        np.random.default_rng(7).choice(len(results), min(RECALL_SAMPLE, len(results)), replace=False)
    )
    ids, queries = results.take(rows)
    queries = queries.reshape(len(rows), -1).astype(np.float32)
    best = np.full((len(rows), k + 1), np.inf, dtype=np.float32)
    for _, block in results.iter_batches(262_144):
        index = faiss.IndexFlatL2(queries.shape[1])
        index.add(np.ascontiguousarray(block.reshape(len(block), -1), dtype=np.float32))
        distances, _ = index.search(queries, min(k + 1, len(block)))
        best = np.sort(np.concatenate([best, distances], axis=1), axis=1)[:, : k + 1]
    exact = np.sqrt(np.maximum(best[:, k], 0))
    table = lance.dataset(str(scores_path(run))).to_table(filter=None).to_pandas().set_index("object_id")
    hyrax_scores = table["outlier_score"].reindex(ids).to_numpy(dtype=np.float64)
    within = np.abs(hyrax_scores - exact) <= 0.01 * np.maximum(exact, 1e-12)
    top = max(1, len(rows) // 100)
    overlap = len(set(np.argsort(-exact)[:top]) & set(np.argsort(-hyrax_scores)[:top])) / top
    return {
        "objects": len(rows),
        "recall": float(within.mean()),
        "note": f"scores within 1% of exact: {within.mean():.4f}; top-1% overlap {overlap:.3f}; "
        f"median ratio {np.median(hyrax_scores / exact):.4f}",
    }


def stage_lookup(work: Path) -> dict:
    from hyrax.results.store import ResultDataset

    h = hyrax(work)
    ids = random_ids(work, 150, seed=11)
    h.lookup(id=ids[0])  # the first call imports what the verb needs
    verb = []
    for object_id in ids[1:51]:
        began = time.perf_counter()
        h.lookup(id=object_id)
        verb.append(time.perf_counter() - began)
    results = ResultDataset(data_location=latest(work, "infer"))
    library = []
    for object_id in ids[51:]:
        began = time.perf_counter()
        results.lookup(object_id)
        library.append(time.perf_counter() - began)
    return {
        "lookup_ms": statistics.median(verb) * 1000,
        "note": f"h.lookup median {statistics.median(verb) * 1000:.1f} ms; "
        f"ResultDataset.lookup median {statistics.median(library) * 1000:.1f} ms",
    }


def stage_map(work: Path) -> dict:
    """`hyrax visualize` in its own process; this process makes the page's requests and reads the
    server's peak RSS from /proc."""
    import urllib.request

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "hyrax", "visualize", "-c", str(work / "config.toml"), "--port", "0"]
    began = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        if " at http" not in line:
            raise SystemExit(f"hyrax visualize did not start: {line}{server.stderr.read()[-3000:]}")
        load = time.perf_counter() - began
        # the printed address ends in ?token=...: every request carries that session token
        url, _, token = line.split(" at ")[1].split()[0].partition("?token=")
        headers = {"X-Hyrax-Token": token, "Content-Type": "application/json"}

        def get(path: str, body: bytes | None = None) -> tuple[float, bytes]:
            start = time.perf_counter()
            method = "POST" if body else "GET"
            request = urllib.request.Request(url + path, data=body, method=method, headers=headers)
            with urllib.request.urlopen(request, timeout=600) as answer:
                payload = answer.read()
            return time.perf_counter() - start, payload

        seconds, payload = get("view?x0=-1e9&x1=1e9&y0=-1e9&y1=1e9")
        whole = json.loads(payload)
        views = [get("view?x0=-1e9&x1=1e9&y0=-1e9&y1=1e9")[0] for _ in range(3)]
        xs = np.frombuffer(_b64(whole["arrays"]["map_x"]), dtype="<f4")
        ys = np.frombuffer(_b64(whole["arrays"]["map_y"]), dtype="<f4")
        cx, cy, sx, sy = float(np.median(xs)), float(np.median(ys)), float(np.std(xs)), float(np.std(ys))
        zoomed = [
            get(f"view?x0={cx - sx / 50}&x1={cx + sx / 50}&y0={cy - sy / 50}&y1={cy + sy / 50}")[0]
            for _ in range(3)
        ]
        density = [
            get(f"density.png?x0={cx - sx}&x1={cx + sx}&y0={cy - sy}&y1={cy + sy}")[0] for _ in range(3)
        ]
        ids = random_ids(work, 70, seed=13)
        thumbs = [get(f"thumb?id={i}")[0] for i in ids[:50]]
        neighbours = [get(f"neighbours?id={i}&k=8")[0] for i in ids[50:]]
        box = json.dumps(
            {"geometry": {"type": "rect", "x0": cx - sx, "x1": cx + sx, "y0": cy - sy, "y1": cy + sy}}
        )
        boxes = [get("selection", box.encode())[0] for _ in range(3)]
        selected = json.loads(get("selection", box.encode())[1])["selected"]
        angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        lasso = json.dumps(
            {
                "geometry": {
                    "type": "poly",
                    "x": (cx + sx * np.cos(angles)).tolist(),
                    "y": (cy + sy * np.sin(angles)).tolist(),
                }
            }
        )
        lassos = [get("selection", lasso.encode())[0] for _ in range(3)]
        peak = _peak_rss_of(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    ms = lambda values: statistics.median(values) * 1000  # noqa: E731
    return {
        "objects": whole["total"],
        "wall": load,
        "rss": peak,
        "workers": None,
        "thumb_ms": ms(thumbs),
        "neighbours_ms": ms(neighbours),
        "note": f"load {load:.1f} s; first view {seconds * 1000:.0f} ms; view {ms(views):.0f} ms; "
        f"zoomed view {ms(zoomed):.0f} ms; density {ms(density):.0f} ms; thumbnail {ms(thumbs):.1f} ms; "
        f"neighbours {ms(neighbours):.1f} ms; box of {selected:,} {ms(boxes):.0f} ms; lasso {ms(lassos):.0f} ms",
    }


def _b64(item: dict) -> bytes:
    import base64

    return base64.b64decode(item["data"])


def _peak_rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


RUNNERS = {
    "train": stage_train,
    "infer": stage_infer,
    "index": stage_index,
    "umap": lambda work: stage_reduce(work, "umap"),
    "pca": lambda work: stage_reduce(work, "pca"),
    "outliers": stage_outliers,
    "recall": stage_recall,
    "map": stage_map,
    "lookup": stage_lookup,
}


def run_stage(stage: str, work: Path) -> None:
    """The body of one stage's process: run it, print a JSON line with its measurements."""
    began = time.perf_counter()
    measured = RUNNERS[stage](work)
    measured.setdefault("wall", time.perf_counter() - began)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    measured.setdefault("rss", own)
    measured.setdefault("workers", children)
    print(json.dumps(measured))


def spawn(stage: str, work: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--work", str(work)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"stage {stage} failed (exit {done.returncode}):\n{done.stderr[-5000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    measured["process"] = time.perf_counter() - began
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, help="number of objects")
    parser.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated, in this order: " + ",".join(STAGES)
    )
    parser.add_argument("--work", type=Path, help="working directory (default benchmarks/.data/scale-N)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory afterwards")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.work)
        return
    if not args.n:
        parser.error("--n is required")
    work = (args.work or HERE / ".data" / f"scale-{args.n}").resolve()
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    sys.path.insert(0, str(HERE))
    make_data(work, args.n)
    print(f"data for {args.n:,} objects in {work} ({time.perf_counter() - began:.0f} s)", flush=True)
    rows = []
    for stage in stages:
        measured = spawn(stage, work)
        measured.setdefault("objects", args.n)
        (work / f"results-{stage}.json").write_text(json.dumps(measured))
        rows.append((stage, measured))
        print(_row(stage, measured, args.n), flush=True)
    print()
    print(table(rows, args.n))
    if not args.keep:
        shutil.rmtree(work / "results", ignore_errors=True)


HEADER = "| stage | objects | wall s | objects/s | peak RSS MB | workers MB | disk B/object | notes |"


def _row(stage: str, m: dict, n: int) -> str:
    objects = int(m.get("objects", n))
    rate = objects / m["wall"] if m["wall"] > 0 else float("nan")
    disk = f"{m['disk'] / n:.1f}" if "disk" in m else "-"
    workers = f"{m['workers']:.0f}" if m.get("workers") else "-"
    return (
        f"| {stage} | {objects:,} | {m['wall']:.1f} | {rate:,.0f} | {m['rss']:.0f} | {workers} | {disk} | "
        f"{m.get('note', '')} |"
    )


def table(rows: list[tuple[str, dict]], n: int) -> str:
    lines = [f"N = {n:,}", HEADER, "|---|---|---|---|---|---|---|---|"]
    lines += [_row(stage, measured, n) for stage, measured in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
