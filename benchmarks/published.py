"""Hyrax side by side with another Hyrax (the published 0.13, installed in another environment): the same
pipeline on the same data, through the API and through the CLI, each run in fresh processes of each side,
the sides alternating. Prints one table.

    python benchmarks/published.py --peer-python /path/to/other/venv/bin/python
                                   [--sizes 1000 10000 100000] [--repeats 3] [--lock FILE]
                                   [--no-cli] [--peer-label 0.13]

A Hyrax 0.13 environment for the peer (x86_64, Python 3.11; 0.13 needs torchvision, which must match its
torch): ``python -m venv peer && peer/bin/pip install torch==2.14.1 torchvision==0.29.1 &&
peer/bin/pip install hyrax==0.13`` (pin torch if pip would take another).

Data: HyraxRandomDataset of N 1x32x32 images, seed 42, HyraxAutoencoder, batch 128, one epoch; UMAP fitted
on 1,024 objects (the published default, set on both sides: equal work), a chromadb index. Both sides get
the same config keys (the published names, which this Hyrax reads too) and the same calls, written as a
0.13 user writes them (its notebooks: ``h.train()``, ``h.infer()``, ``h.umap()``, ``h.save_to_database()``,
``h.database_connection()``, ``db.get_by_id``, ``db.search_by_id``, ``h.lookup(id=)``, ``h.to_onnx()``).

API stages, one fresh process a side (this file run with ``--case`` by that side's Python, so each
side imports its own Hyrax; nothing of Hyrax is imported at the top here):

- ``start``: ``import hyrax`` and ``Hyrax()``; ``train``; ``start + train`` (the published Hyrax imports
  torch, Ignite, MLflow and Lance in ``import hyrax``, this one in the verb that uses them); ``infer``, ``umap``; ``save_to_database``
  (chromadb insert of the N vectors); ``connect`` (``h.database_connection()``);
- ``get_by_id x100``: 100 calls of ``db.get_by_id([id])``, ids spread over the run;
- ``search_by_id x20``: 20 calls of ``db.search_by_id(id, k=10)``;
- ``lookup x5``: 5 calls of ``h.lookup(id=...)`` (the verb: an id's vector from the infer results);
- ``to_onnx``; ``api total``: the process as a user waits for it, interpreter start included.

CLI commands, each a fresh process of the side's own ``hyrax`` script (beside its Python) with ``-c`` a
config file holding the same keys: ``--version``, ``prepare``, ``train``, ``infer``, ``umap``,
``reduce_dimensions -a pca``, ``save_to_database``, ``lookup -i ID``, ``to_onnx``, and ``cli total`` (the
nine summed).

With ``--lock FILE`` each pair of runs (both sides, API and CLI) holds an exclusive flock on FILE, so
benchmarks that take the same lock do not overlap (the machine's other load still does: it is printed).
The first side of a pair alternates with each repetition. Ratios are peer time / our time (above 1: we
are faster), of the least times and the median of the per-pair ratios. The load average (1 minute) is
printed with each pair and in the table (the highest of the pairs of that size).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

API_STAGES = (
    "start",
    "train",
    "start + train",
    "infer",
    "umap",
    "save_to_database",
    "connect",
    "get_by_id x100",
    "search_by_id x20",
    "lookup x5",
    "to_onnx",
    "api total",
)

#: The CLI pipeline: (stage name, arguments after ``hyrax``); {config} and {id} are filled in.
CLI_COMMANDS = (
    ("cli --version", ["--version"]),
    ("cli prepare", ["prepare", "-c", "{config}"]),
    ("cli train", ["train", "-c", "{config}"]),
    ("cli infer", ["infer", "-c", "{config}"]),
    ("cli umap", ["umap", "-c", "{config}"]),
    ("cli reduce_dimensions pca", ["reduce_dimensions", "-a", "pca", "-c", "{config}"]),
    ("cli save_to_database", ["save_to_database", "-c", "{config}"]),
    ("cli lookup", ["lookup", "-i", "{id}", "-c", "{config}"]),
    ("cli to_onnx", ["to_onnx", "-c", "{config}"]),
)
CLI_STAGES = (*(name for name, _ in CLI_COMMANDS), "cli total")


def settings(work: str, objects: int) -> dict:
    """The configuration both sides get, as {dotted key: value}, in the published key names."""
    request = {
        "data": {
            "dataset_class": "HyraxRandomDataset",
            "data_location": work,
            "primary_id_field": "object_id",
        }
    }
    return {
        "general.results_dir": os.path.join(work, "results"),
        "data_set.HyraxRandomDataset.size": objects,
        "data_set.HyraxRandomDataset.shape": [1, 32, 32],
        "data_set.HyraxRandomDataset.seed": 42,
        "data_loader.batch_size": 128,
        "model.name": "HyraxAutoencoder",
        "train.epochs": 1,
        "reduce_dimensions.umap.fit_sample_size": 1024,
        "vector_db.name": "chromadb",
        "data_request": {"train": request, "infer": request},
    }


def config_toml(values: dict) -> str:
    """The settings as a TOML file (written by hand: no TOML writer is needed on either side)."""
    tables: dict[str, dict] = {}
    for dotted, value in values.items():
        if dotted == "data_request":
            for group, fields in value.items():
                for name, field in fields.items():
                    tables[f"data_request.{group}.{name}"] = field
            continue
        table, key = dotted.rsplit(".", 1)
        tables.setdefault(table, {})[key] = value
    return "".join(
        f"[{table}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in body.items()) + "\n"
        for table, body in tables.items()
    )


def timed(times: dict, stage: str, call):
    start = time.perf_counter()
    value = call()
    times[stage] = time.perf_counter() - start
    return value


def api_case(work: str, objects: int) -> dict:
    """The API pipeline in this process, with whichever Hyrax this Python imports."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    import hyrax

    h = hyrax.Hyrax()
    times["start"] = time.perf_counter() - start
    for key, value in settings(work, objects).items():
        h.set_config(key, value)
    timed(times, "train", h.train)
    results = timed(times, "infer", h.infer)
    ids = [str(i) for i in results.ids()]
    spread = ids[:: max(1, len(ids) // 100)][:100]
    timed(times, "umap", h.umap)
    timed(times, "save_to_database", h.save_to_database)
    db = timed(times, "connect", h.database_connection)
    found = timed(times, "get_by_id x100", lambda: [db.get_by_id([i]) for i in spread])
    assert all(len(f) == 1 for f in found), "get_by_id missed an id"
    timed(times, "search_by_id x20", lambda: [db.search_by_id(i, k=10) for i in spread[:20]])
    timed(times, "lookup x5", lambda: [h.lookup(id=i) for i in spread[:5]])
    timed(times, "to_onnx", h.to_onnx)
    # The published Hyrax imports torch, Ignite, MLflow and Lance in `import hyrax`; this one in the first
    # verb that uses them: start and train are compared together too.
    times["start + train"] = times["start"] + times["train"]
    return {"times": times, "version": getattr(hyrax, "__version__", "?"), "ids": spread[:5]}


def run_api(python: str, work: str, objects: int) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [python, os.path.abspath(__file__), "--case", work, str(objects)],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,
    )
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{python} failed at {objects} objects (API):\n{result.stderr[-4000:]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    found["times"]["api total"] = wall
    return found


def run_cli(python: str, work: str, objects: int, object_id: str) -> dict:
    """The CLI commands, each a fresh process of the side's own ``hyrax`` script, timed from outside."""
    hyrax_script = str(Path(python).parent / "hyrax")
    config = os.path.join(work, "hyrax_config.toml")
    Path(config).write_text(config_toml(settings(os.path.join(work, "cli"), objects)))
    os.makedirs(os.path.join(work, "cli"), exist_ok=True)
    times = {}
    for stage, arguments in CLI_COMMANDS:
        command = [hyrax_script, *(a.format(config=config, id=object_id) for a in arguments)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=work)
        times[stage] = time.perf_counter() - started
        last = (result.stderr.strip().splitlines() or [""])[-1]
        # The published CLI ends with exit(run_cli's value): umap and reduce_dimensions return their
        # results object, which exit() prints and turns into status 1 after a complete run.
        returned_an_object = result.returncode == 1 and last.startswith("<") and " object at 0x" in last
        if result.returncode and not returned_an_object:
            raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    times["cli total"] = sum(times.values())
    return times


def run_side(python: str, objects: int, cli: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="hyrax-published-") as work:
        api_work = os.path.join(work, "api")
        os.makedirs(api_work)
        found = run_api(python, api_work, objects)
        if cli:
            cli_work = os.path.join(work, "cli-run")
            os.makedirs(cli_work)
            found["times"].update(run_cli(python, cli_work, objects, found["ids"][0]))
    return found


@contextlib.contextmanager
def held(lock: str | None):
    """An exclusive flock on ``lock`` (none when not given), released on leaving."""
    if lock is None:
        yield
        return
    import fcntl

    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer-python", help="the Python of the environment holding the other Hyrax")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--repeats-at",
        nargs=2,
        type=int,
        action="append",
        default=[],
        metavar=("OBJECTS", "REPEATS"),
        help="another number of repetitions at one size (e.g. --repeats-at 100000 1)",
    )
    parser.add_argument("--lock", help="a file to flock exclusively around each pair of runs")
    parser.add_argument("--no-cli", action="store_true", help="the API stages only")
    parser.add_argument(
        "--cli-repeats",
        type=int,
        help="run the CLI commands in the first N pairs of each size only (default: every pair)",
    )
    parser.add_argument("--case", nargs=2, metavar=("WORK", "OBJECTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        work, objects = args.case
        print(json.dumps(api_case(work, int(objects))))
        return
    if not args.peer_python:
        parser.error("--peer-python is required")
    repeats_at = dict(args.repeats_at)
    sides = {"ours": sys.executable, "peer": args.peer_python}
    print(f"ours: {sys.executable}\npeer: {args.peer_python}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)", flush=True)
    stages = API_STAGES + (() if args.no_cli else CLI_STAGES)
    table = []
    for objects in args.sizes:
        runs: dict[str, list[dict]] = {"ours": [], "peer": []}
        loads = []
        for repeat in range(repeats_at.get(objects, args.repeats)):
            order = ["ours", "peer"] if repeat % 2 == 0 else ["peer", "ours"]
            with held(args.lock):
                loads.append(os.getloadavg()[0])
                cli = not args.no_cli and (args.cli_repeats is None or repeat < args.cli_repeats)
                for side in order:
                    runs[side].append(run_side(sides[side], objects, cli))
            pair = {side: runs[side][-1]["times"] for side in order}
            print(
                f"  {objects} objects, pair {repeat + 1} ({' then '.join(order)}), load {loads[-1]:.1f}: "
                + ", ".join(
                    f"{stage} {pair['ours'][stage]:.2f}/{pair['peer'][stage]:.2f}" for stage in stages
                ),
                flush=True,
            )
        versions = {side: runs[side][0]["version"] for side in runs}
        for stage in stages:
            ours = [r["times"][stage] for r in runs["ours"] if stage in r["times"]]
            peer = [r["times"][stage] for r in runs["peer"] if stage in r["times"]]
            ratios = [p / o for p, o in zip(peer, ours, strict=True)]
            table.append(
                (
                    objects,
                    stage,
                    min(ours),
                    min(peer),
                    min(peer) / min(ours),
                    statistics.median(ratios),
                    len(ratios),
                    max(loads),
                )
            )
    print(
        f"\nours {versions['ours']}, peer {versions['peer']}; ratio = peer time / our time (>1: ours faster)"
    )
    print(
        f"{'objects':>8} {'stage':28} {'ours min s':>10} {'peer min s':>10} {'ratio of mins':>13} "
        f"{'median ratio':>12} {'pairs':>5} {'load':>5}"
    )
    for objects, stage, ours, peer, ratio, median, pairs, load in table:
        print(
            f"{objects:>8} {stage:28} {ours:>10.3f} {peer:>10.3f} {ratio:>13.2f} {median:>12.2f} "
            f"{pairs:>5} {load:>5.1f}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
