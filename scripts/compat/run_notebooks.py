"""Extract upstream Hyrax's user notebooks and run each one's code cells against the installed `hyrax`.

    python run_notebooks.py --upstream UPSTREAM_CHECKOUT --work WORK_DIR --python PY [--extra DIR] [--only NAME ...]

UPSTREAM_CHECKOUT: a plain checkout (or `git archive` extraction) of lincc-frameworks/hyrax.
PY: the python of the environment under test (its `hyrax` is what runs).
--newer DIR: also run upstream's notebooks newer than the checkout, read from DIR/<name>.ipynb (made by
newer_notebooks.py; NEWER below lists them with where each was read), in their upstream folder.
--extra: a directory prepended to PYTHONPATH for the notebooks' own plotting/tuning imports
(matplotlib, optuna, hyperopt), installed there by run_all.sh so the environment under test is untouched.

Each notebook runs in WORK_DIR/nb/<name>/<notebook's dir>/ (so relative paths such as ./data and
../../data resolve as they would in the upstream repo), with a copy of the notebook directory's other
files (configs, example_results/). Cells that need the internet are skipped, or replaced by a local
substitute (synthetic data from fake_data.py), and marked so in the result; see PLAN below.
Results: WORK_DIR/nb/<name>/result.json and .../log.txt (WORK_DIR/nb-aliases/... with --aliases: the
same run with compat_aliases installed first); one line per notebook on stdout.
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

HERE = Path(__file__).resolve().parent

NOTEBOOK_GLOBS = ["docs/notebooks/*.ipynb", "docs/pre_executed/*.ipynb", "example_notebooks/*.ipynb"]

CIFAR = {
    "data": [("cifar", "data")],
    "note": "CIFAR-10 is downloaded by upstream's dataset class (needs internet); here ./data holds a "
    "synthetic CIFAR-format folder (fake_data.py cifar: 5x200 train + 10000 test images)",
}
HSC = {
    "data": [("hsc", "../../data/hsc_8asec_1000")],
    "note": "the Zenodo HSC demo (pooch, needs internet) is replaced by 150 synthetic 3-band 48x48 "
    "cutouts named as the downloader names them, with an upstream-style manifest.fits",
}

TESS = "https://data.lsdb.io/hats/tess/tess_lightcurve"
NET_HATS = (
    "needs internet upstream: a remote HATS catalog replaced by a local stand-in of its shape (fake_data.py)"
)
CPU = "CPU budget"

# Per notebook (path relative to the upstream root): fake data to create, cells to skip or substitute
# (code-cell indexes from 0), and text patches (CPU only).
PLAN: dict[str, dict] = {
    "docs/pre_executed/getting_started.ipynb": CIFAR,
    "docs/pre_executed/distributed_training.ipynb": CIFAR,
    "docs/pre_executed/hyrax_checkpointing.ipynb": CIFAR,
    "docs/pre_executed/load_pretrained_model.ipynb": CIFAR,
    "docs/pre_executed/using_lr_schedulers.ipynb": CIFAR,
    "docs/pre_executed/vector_db_demo.ipynb": CIFAR,
    "docs/pre_executed/working_with_results_data.ipynb": CIFAR,
    "docs/pre_executed/hyperparameter_tuning_examples.ipynb": {
        **CIFAR,
        "patch": [
            ("n_trials=6", "n_trials=2", "CPU budget: 2 optuna trials instead of 6"),
            ("max_evals=6", "max_evals=2", "CPU budget: 2 hyperopt evaluations instead of 6"),
        ],
    },
    "docs/pre_executed/unsupervised_hsc_full_pipeline.ipynb": {
        **HSC,
        "substitute": {
            1: (
                'data_dir = "../../data/hsc_8asec_1000"  # synthetic cutouts (fake_data.py hsc)',
                "pooch download from Zenodo (needs internet)",
            )
        },
    },
    "docs/pre_executed/unsupervised_image_extragalactic.ipynb": {
        **HSC,
        "substitute": {
            1: (
                "pass  # synthetic cutouts already in ../../data/hsc_8asec_1000 (fake_data.py hsc)",
                "pooch download from Zenodo (needs internet)",
            )
        },
    },
    "docs/pre_executed/supervised_lightcurve_transients.ipynb": {
        "data": [("plasticc", "plasticc_samples.pkl")],
        "note": "MultimodalUniverse/plasticc (Hugging Face, needs internet) replaced by 400 synthetic "
        "light curves in the same row layout",
        "substitute": {
            1: (
                "import pickle\n"
                "with open('plasticc_samples.pkl', 'rb') as f:\n"
                "    ds = pickle.load(f)\n"
                "print(f'Loaded {len(ds)} samples')",
                "datasets.load_dataset('MultimodalUniverse/plasticc') (needs internet)",
            )
        },
        "patch": [
            (
                'h.set_config("train.epochs", 50)',
                'h.set_config("train.epochs", 5)',
                "CPU budget: 5 epochs instead of 50",
            )
        ],
    },
    "docs/pre_executed/supervised_lightcurve_transients_gs.ipynb": {
        "skip_all": "duplicate",
        "note": "code cells identical to supervised_lightcurve_transients.ipynb (only outputs/metadata differ)",
    },
    "docs/pre_executed/mmu_images_with_hyrax.ipynb": {
        "data": [("mmu", "mmu")],
        "note": "hf://MultimodalUniverse/legacysurvey (needs internet) replaced by a local "
        "synthetic copy in the Hub layout (fake_data.py mmu)",
        "patch": [
            (
                '"hf://MultimodalUniverse/legacysurvey"',
                '"./mmu/legacysurvey"',
                "needs internet upstream: hf:// replaced by a local synthetic Hub-layout copy",
            )
        ],
    },
    "docs/pre_executed/mmu_spectra_with_hyrax.ipynb": {
        "data": [("mmu", "mmu")],
        "note": "hf://MultimodalUniverse/desi (needs internet) replaced by a local "
        "synthetic copy in the Hub layout (fake_data.py mmu)",
        "patch": [
            (
                '"hf://MultimodalUniverse/desi"',
                '"./mmu/desi"',
                "needs internet upstream: hf:// replaced by a local synthetic Hub-layout copy",
            )
        ],
    },
    "docs/pre_executed/mmu_time_series_with_hyrax.ipynb": {
        "data": [("mmu", "mmu")],
        "note": "hf://MultimodalUniverse/plasticc (needs internet) replaced by a local "
        "synthetic copy in the Hub layout (fake_data.py mmu)",
        "patch": [
            (
                '"hf://MultimodalUniverse/plasticc"',
                '"./mmu/plasticc"',
                "needs internet upstream: hf:// replaced by a local synthetic Hub-layout copy",
            )
        ],
    },
    "docs/pre_executed/infer_stream_example.ipynb": {
        "service": {"kafka": {"port": 9092, "topic": "my_topic", "messages": 24}},
        "note": "a local Kafka-protocol broker (Tansu, kafka_service.py) on 127.0.0.1:9092 serves my_topic with "
        "24 JSON samples {id, image 8x8, label}; the notebook's endless loop over the stream is stopped "
        "after 150 s as a user stops it (joining the consumer group takes Tansu ~25 s), and counts as run only if it printed a processed batch",
        "interrupt": {3: (150, r"Processed batch \d+")},
    },
    "docs/pre_executed/vis_v2_experimentation.ipynb": {
        "note": "points at the author's own files (/Users/drew/...): not runnable outside that machine "
        "even upstream; run verbatim"
    },
    "docs/notebooks/hats_dataset.ipynb": {
        "note": "writes its own HATS catalog with lsdb.from_dataframe (lsdb is a dependency here): run verbatim"
    },
    # ---- newer than the snapshot (run with --newer; see NEWER) ----
    "docs/notebooks/lsdb_stream.ipynb": {
        "data": [("hats_points", "data")],
        "note": "a draft (branch mtauraso/data-stream): ./data is a local HATS catalog of points (fake_data.py)",
    },
    "docs/pre_executed/lsdb_stream_dataset.ipynb": {
        "data": [("gaia", "gaia_dr3"), ("tess", "tess_lightcurve")],
        "note": "gaia_dr3 and tess_lightcurve (data.lsdb.io) replaced by local HATS stand-ins of their shape",
        "patch": [
            ('"https://data.lsdb.io/hats/gaia_dr3"', '"./gaia_dr3"', NET_HATS),
            (f'"{TESS}"', '"./tess_lightcurve"', NET_HATS),
        ],
    },
    "docs/pre_executed/basic_lsdb_stream_test.ipynb": {
        "data": [("tess", "tess_lightcurve"), ("ztf_lc", "ztf_dr24_lc")],
        "note": "tess_lightcurve (data.lsdb.io) and IRSA's ZTF DR24 light curves (s3) replaced by local HATS "
        "stand-ins; 3 batches of sequences of 64 instead of 100 of 256, one Dask worker (CPU budget)",
        "patch": [
            (f'"{TESS}"', '"./tess_lightcurve"', NET_HATS),
            ('"s3://ipac-irsa-ztf/ztf/enhanced/dr24/lc/hats"', '"./ztf_dr24_lc"', NET_HATS),
            ("MAX_BATCHES = 100", "MAX_BATCHES = 3", CPU + ": 3 batches instead of 100"),
            ('max_sequence_length", 256)', 'max_sequence_length", 64)', CPU + ": sequences of 64, not 256"),
            ("Client(n_workers=2,", "Client(n_workers=1,", CPU + ": one Dask worker instead of 2"),
        ],
    },
    "docs/pre_executed/tess_lsdb_stream_example.ipynb": {
        "data": [("tess", "tess_lightcurve")],
        "note": "tess_lightcurve (data.lsdb.io) replaced by a local HATS stand-in; 3 training batches of 16 "
        "sequences of 64 instead of 100 of 64 x 256 (CPU budget)",
        "patch": [
            (f'"{TESS}"', '"./tess_lightcurve"', NET_HATS),
            ("MAX_BATCHES = 100", "MAX_BATCHES = 3", CPU + ": 3 batches instead of 100"),
            ('max_sequence_length", 256)', 'max_sequence_length", 64)', CPU + ": sequences of 64, not 256"),
            (
                'h.set_config("data_loader.batch_size", 64)',
                'h.set_config("data_loader.batch_size", 16)',
                CPU + ": training batches of 16, not 64",
            ),
        ],
    },
    "docs/pre_executed/lsdb_style_api_infer.ipynb": {
        "data": [("tess", "tess_lightcurve")],
        "note": "tess_lightcurve (data.lsdb.io) replaced by a local HATS stand-in with objects in the cone",
        "patch": [(f'"{TESS}"', '"./tess_lightcurve"', NET_HATS)],
    },
    "docs/notebooks/hats_dataset_phase2_loopback.ipynb": {
        "data": [("hats_points", "hats_catalog")],
        "note": "a draft (branch codex/draft-detailed-plan-for-phase-2) with a placeholder path: HATS_PATH points "
        "at a local HATS catalog of points with object_id, coord_ra, coord_dec",
        "patch": [
            (
                "Path('/path/to/your/hats_catalog')",
                "Path('hats_catalog')",
                "the notebook's placeholder path ('TODO: replace with your local HATS catalog path')",
            )
        ],
    },
    "docs/pre_executed/pretrained_model_inference.ipynb": {
        **CIFAR,
        "data": CIFAR["data"] + [("cnn_weights", "results/20260101-120000-train-xxxx/example_model.pth")],
        "note": CIFAR["note"] + "; the pretrained weights file it names is a HyraxCNN state_dict in the "
        "published layout (conv1..fc3, 10 classes), seeded (fake_data.py cnn_weights)",
    },
    "docs/pre_executed/slchallenge_demo.ipynb": {
        "data": [("sl", "sl_100/hsc_combined")],
        "note": "removed upstream in 2025-09 (d3fdf63a, moved to notebooks_lf); the author's strong-lensing "
        "folder replaced by 40 synthetic objects in its layout; 2 epochs instead of 30",
        "patch": [
            (
                '"/home/drew/data/sl_100/hsc_combined"',
                '"./sl_100/hsc_combined"',
                "the author's own folder: a local synthetic copy of its layout",
            ),
            ('h.config["train"]["epochs"] = 30', 'h.config["train"]["epochs"] = 2', CPU + ": 2 epochs"),
        ],
    },
    "docs/pre_executed/generate_synthetic_100M.ipynb": {
        "data": [("results", "results/20260406-134617-umap-2zH3")],
        "note": "the author's UMAP run is replaced by one made by the implementation under test "
        "(fake_data.py results: 2000 objects); 20,000 rows are generated instead of 300M",
        "patch": [
            (
                '"/Users/drew/code/hyrax/docs/pre_executed/results/',
                '"results/',
                "the author's own results folder: a local run",
            ),
            ("TARGET_ROWS = 300_000_000", "TARGET_ROWS = 20_000", CPU + ": 20,000 rows instead of 300M"),
            ("BATCH_SIZE = 500_000", "BATCH_SIZE = 5_000", CPU + ": batches of 5,000"),
        ],
    },
    "docs/pre_executed/results_perf_testing.ipynb": {
        "data": [("results", "results/synthetic")],
        "note": "the author's 10M/100M-row results are replaced by one results directory of 2000 objects made by "
        "the implementation under test; reads of up to 1,000 rows instead of 1M/50M",
        "patch": [
            (
                '"/Users/drew/code/hyrax/docs/pre_executed/results/synthetic-10M_b"',
                '"results/synthetic"',
                "the author's own results folder: a local run",
            ),
            (
                '"/Users/drew/code/hyrax/docs/pre_executed/results/synthetic-100M_b"',
                '"results/synthetic"',
                "the author's own results folder: a local run",
            ),
            (
                '"/Users/drew/code/hyrax/docs/pre_executed/results/synthetic-100M"',
                '"results/synthetic"',
                "the author's own results folder: a local run",
            ),
            ("range(0, 100_000)", "range(0, 1_000)", CPU + ": the table holds 2000 rows"),
            ("range(0, 1_000_000)", "range(0, 2_000)", CPU + ": the table holds 2000 rows"),
            ("range(0, 50_000_000)", "range(0, 2_000)", CPU + ": the table holds 2000 rows"),
        ],
    },
    "example_notebooks/GettingStartedDownloader.ipynb": {
        "substitute": {
            1: (
                "import hyrax\nhyrax_instance = hyrax.Hyrax(config_file='hyrax_config.toml')\n"
                "print('download() not called: needs the HSC service and an account')",
                "hyrax_instance.download() needs internet and HSC credentials",
            )
        },
        "skip": {2: ("needs-internet", "plots the downloaded cutouts' dimensions (raw_data_dimensions)")},
    },
}


# Upstream notebooks newer than the fetchable snapshot (71df8a8, 2026-08-17), published in
# lincc-frameworks/hyrax docs/: where each was read. A commit is in the bare git directory the fetch tool
# gives (its other branches); None: not there, its code cells were read with the search tool's read_file
# (commit named) and written out by hand (newer_notebooks.py says which to add).
NEWER: dict[str, tuple[str | None, str]] = {
    "docs/notebooks/lsdb_stream.ipynb": (
        "58e48a498371ba99d373c8ed62bac2cb427e1e7d",
        "branch mtauraso/data-stream",
    ),
    "docs/pre_executed/lsdb_stream_dataset.ipynb": ("b40ce4f82dcef21078f8d9d7f309492a23218555", ""),
    "docs/pre_executed/basic_lsdb_stream_test.ipynb": ("6fa15460a59bc9b845b56ceb46f7b6dc5d52bdd0", ""),
    "docs/pre_executed/tess_lsdb_stream_example.ipynb": (None, "search tool, commit 331d7c58"),
    "docs/pre_executed/lsdb_style_api_infer.ipynb": (None, "search tool, commit 27dc0a25"),
    "docs/notebooks/hats_dataset_phase2_loopback.ipynb": ("174a1583bf0c458cb1d4f9d1db3a27f916d65bee", ""),
    "docs/pre_executed/pretrained_model_inference.ipynb": (
        "568524b2",
        "code cells as the search tool's e3de8d8e",
    ),
    "docs/pre_executed/slchallenge_demo.ipynb": ("9ec429f0f3797920b77c8c6ea16c2840f3966a84", ""),
    "docs/pre_executed/generate_synthetic_100M.ipynb": ("9d910bfb", "its last version before removal"),
    "docs/pre_executed/results_perf_testing.ipynb": ("9d910bfb", "its last version before removal"),
}


def notebook_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


def build_spec(rel: str, sources: list[str]) -> dict:
    plan = PLAN.get(rel, {})
    cells = []
    for i, source in enumerate(sources):
        cell = {"index": i, "source": source, "action": "run", "kind": "verbatim"}
        if plan.get("skip_all"):
            cell.update(action="skip", status_if_skipped=plan["skip_all"], note=plan.get("note", ""))
        elif i in plan.get("skip", {}):
            status, why = plan["skip"][i]
            cell.update(action="skip", status_if_skipped=status, note=why)
        elif i in plan.get("interrupt", {}):
            seconds, expect = plan["interrupt"][i]
            cell.update(interrupt_after=seconds, interrupt_expect=expect)
        elif i in plan.get("substitute", {}):
            code, why = plan["substitute"][i]
            cell.update(source=code, kind="substituted", note=f"needs internet upstream: {why}")
        for old, new, why in plan.get("patch", []):
            if old in cell["source"]:
                cell["source"] = cell["source"].replace(old, new)
                cell["kind"] = "patched"
                cell["note"] = (cell.get("note", "") + "; " if cell.get("note") else "") + why
        cells.append(cell)
    return {"notebook": rel, "cells": cells}


def prepare_workdir(upstream: Path, rel: str, root: Path, python: str) -> Path:
    if root.exists():
        shutil.rmtree(root)
    nb_dir = (upstream / rel).parent
    cwd = root / nb_dir.relative_to(upstream)
    cwd.mkdir(parents=True)
    for item in nb_dir.iterdir() if nb_dir.is_dir() else []:
        if item.suffix == ".ipynb":
            continue
        if item.is_dir():
            shutil.copytree(item, cwd / item.name)
        else:
            shutil.copy2(item, cwd / item.name)
    for kind, target in PLAN.get(rel, {}).get("data", []):
        subprocess.run(
            [python, str(HERE / "fake_data.py"), kind, str(cwd / target)],
            check=True,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return cwd


class Services:
    """Local services a notebook's plan names (a Kafka-protocol broker), up for that notebook's run."""

    def __init__(self, plan: dict, python: str, log):
        import fcntl
        import tempfile

        self.processes, self.locks = [], []
        for kind, settings in plan.get("service", {}).items():
            assert kind == "kafka", kind
            # The notebook names a fixed port (localhost:9092): two runs on one machine take turns.
            lock = open(Path(tempfile.gettempdir()) / f"compat-{kind}-{settings['port']}.lock", "w")  # noqa: SIM115
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.locks.append(lock)
            args = [python, str(HERE / "kafka_service.py")] + [f"--{k}={v}" for k, v in settings.items()]
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
            self.processes.append(process)
            if process.stdout.readline().strip() != "ready":
                self.stop()
                raise RuntimeError(f"the local {kind} service did not start (see log.txt)")

    def stop(self):
        for process in self.processes:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []
        for lock in self.locks:
            lock.close()  # closing releases the flock, once the service is gone
        self.locks = []


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--extra", default=None)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument(
        "--newer",
        type=Path,
        default=None,
        help="a folder of upstream notebooks newer than the checkout (newer_notebooks.py)",
    )
    parser.add_argument("--cell-timeout", type=int, default=900)
    parser.add_argument(
        "--aliases",
        action="store_true",
        help="install compat_aliases first (upstream import paths used by the notebooks)",
    )
    args = parser.parse_args()
    upstream = args.upstream.resolve()
    sources = {str(p.relative_to(upstream)): p for g in NOTEBOOK_GLOBS for p in upstream.glob(g)}
    if args.newer:
        for rel in NEWER:
            if (args.newer / Path(rel).name).exists():
                sources[rel] = args.newer / Path(rel).name
            else:
                print(f"{rel}: not in {args.newer} (newer_notebooks.py)", flush=True)
    rels = sorted(sources)
    if args.only:
        rels = [r for r in rels if any(o in r for o in args.only)]
    env = dict(
        os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", COMPAT_ALIASES="1" if args.aliases else "0"
    )
    if args.extra:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.extra, env.get("PYTHONPATH")]))
    for rel in rels:
        name = rel.replace("/", "__").removesuffix(".ipynb")
        root = args.work.resolve() / ("nb-aliases" if args.aliases else "nb") / name
        spec = build_spec(rel, notebook_cells(sources[rel]))
        try:
            cwd = prepare_workdir(upstream, rel, root, args.python)
        except subprocess.CalledProcessError as error:
            # A stand-in the implementation under test could not make (fake_data.py results uses its
            # verbs): the notebook is not run; recorded as the harness's, with the command that failed.
            root.mkdir(parents=True, exist_ok=True)
            failed = {
                "type": "StandInFailed",
                "message": str(error),
                "first_line": f"stand-in data: {error}"[:500],
            }
            result = {
                "notebook": rel,
                "note": PLAN.get(rel, {}).get("note", ""),
                "exit_code": None,
                "cells": [{"index": 0, "status": "error", "kind": "harness", "error": failed}],
            }
            (root / "result.json").write_text(json.dumps(result, indent=1))
            print(f"{rel}: stand-in data failed ({error})", flush=True)
            continue
        spec["note"] = PLAN.get(rel, {}).get("note", "")
        if rel in NEWER:
            commit, where = NEWER[rel]
            spec["newer"] = f"newer than the checkout: {commit or ''} {where}".strip()
        (root / "cells.json").write_text(json.dumps(spec, indent=1))
        # The extracted script, for reading (the runner executes cells.json, not this file).
        (root / "cells.py").write_text(
            "\n\n".join(
                f"# %% cell {c['index']} [{c['kind']}] {c.get('note', '')}\n{c['source']}"
                for c in spec["cells"]
            )
            + "\n"
        )
        started = time.time()
        with open(root / "log.txt", "w") as log:
            try:
                services = Services(PLAN.get(rel, {}), args.python, log)
            except RuntimeError as error:
                failed = {"type": "ServiceFailed", "message": str(error), "first_line": str(error)}
                (root / "result.json").write_text(json.dumps({
                    "notebook": rel, "note": spec["note"], "exit_code": None,
                    "cells": [{"index": 0, "status": "error", "kind": "harness", "error": failed}]}, indent=1))  # fmt: skip
                print(f"{rel}: {error}", flush=True)
                continue
            try:
                proc = subprocess.run(
                    [
                        args.python,
                        str(HERE / "run_notebook.py"),
                        str(root / "cells.json"),
                        str(root / "result.json"),
                        "--cell-timeout",
                        str(args.cell_timeout),
                    ],
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            finally:
                services.stop()
        result_file = root / "result.json"
        result = (
            json.loads(result_file.read_text()) if result_file.exists() else {"notebook": rel, "cells": []}
        )
        result.update(note=spec["note"], exit_code=proc.returncode, seconds=round(time.time() - started, 1))
        if spec.get("newer"):
            result["newer"] = spec["newer"]
        result_file.write_text(json.dumps(result, indent=1))
        statuses = [c["status"] for c in result["cells"]]
        print(
            f"{rel}: "
            + ", ".join(f"{s}={statuses.count(s)}" for s in sorted(set(statuses)))
            + f" (exit {proc.returncode}, {result['seconds']}s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
