"""What torchrun and DistributedDataParallel cost on this machine: one epoch of HyraxAutoencoder through
h.train() in one plain process against the same under torchrun, 1 and 2 processes.

    python benchmarks/ddp_overhead.py [--objects 2048] [--batch-size 32] [--repeats 2]

The cases (each run a fresh process, or a fresh torchrun, the cases alternated round by round):

- ``plain 1x1``: ``h.train()`` in one process of one torch thread, batches of ``--batch-size``: the
  rate of one process, the unit a plan multiplies;
- ``torchrun 1x1``: the same under ``torchrun --standalone --nproc_per_node=1`` (one process: no DDP; the
  launcher's cost alone);
- ``torchrun 2x1``: ``--nproc_per_node=2``, one thread each, each with batches of ``--batch-size`` (a
  global batch of twice that): DDP on gloo, gradients all-reduced every step;
- ``plain 1x2``: one process of two threads on batches of twice ``--batch-size``: what one process
  makes of the same two cores.

Timed: the training epoch (rank 0's, as h.train() records it; the objects of every process over it give
the rate) and the whole command from its start to its exit (imports, the rendezvous, the run directory);
peak RSS per process (VmHWM). Efficiency of 2 processes = their rate / (2 x plain 1x1's). The load
average is printed at the start and end: on a shared machine, say it with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _harness import alternating, memory_mb


def case(objects: int, batch_size: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from hyrax import Hyrax

    with tempfile.TemporaryDirectory() as results:
        h = Hyrax(setup_logging=False)
        h.set_config("general.results_dir", os.environ.get("DDP_RESULTS", results))
        h.set_config("model.name", "HyraxAutoencoder")
        h.set_config("data_set.HyraxRandomDataset.size", objects)
        h.set_config("data_set.HyraxRandomDataset.shape", [3, 64, 64])
        h.set_config("data_set.seed", 7)
        h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
        h.set_config("data_loader.batch_size", batch_size)
        h.set_config("data_loader.num_workers", 0)
        h.set_config("train.epochs", 1)
        model = h.train()
    epoch = model.training_history[-1]
    print(
        json.dumps(
            {
                "rank": int(os.environ.get("RANK", "0")),
                "epoch_seconds": epoch["train_seconds"],
                "samples": epoch["train_samples"],  # this process's share of the epoch
                "threads": torch.get_num_threads(),
                "peak_rss_mb": memory_mb()[1],
            }
        )
    )


CASES = {
    # name: (processes under torchrun, 0: plain; threads per process; batch multiplier)
    "plain 1x1": (0, 1, 1),
    "torchrun 1x1": (1, 1, 1),
    "torchrun 2x1": (2, 1, 1),
    "plain 1x2": (0, 2, 2),
}


def run(name: str, objects: int, batch_size: int) -> dict:
    processes, threads, multiplier = CASES[name]
    arguments = [__file__, "--case", str(objects), str(batch_size * multiplier), str(threads)]
    command = [sys.executable, *arguments]
    if processes:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += [f"--nproc_per_node={processes}", *arguments]
    with tempfile.TemporaryDirectory() as results:  # shared by the processes: rank 0 writes the run
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "DDP_RESULTS": results}
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
        whole = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    main = next(line for line in lines if line["rank"] == 0)
    return {
        "whole": whole,
        "epoch": main["epoch_seconds"],
        "rate": sum(line["samples"] for line in lines) / main["epoch_seconds"],
        "rss": [line["peak_rss_mb"] for line in sorted(lines, key=lambda line: line["rank"])],
        "threads": main["threads"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32, help="per process (plain 1x2: twice this)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case; the best is kept")
    parser.add_argument("--case", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        case(*args.case)
        return
    print(f"load average at start: {os.getloadavg()}")
    runs: dict[str, list[dict]] = {name: [] for name in CASES}
    for name in alternating(list(CASES), args.repeats):
        runs[name].append(run(name, args.objects, args.batch_size))
        print(f"  {name}: {runs[name][-1]}  (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"load average at end: {os.getloadavg()}")
    unit = max(r["rate"] for r in runs["plain 1x1"])
    print(
        f"\n{args.objects} objects 3x64x64, HyraxAutoencoder, SGD, batch {args.batch_size} "
        f"per process; best of {args.repeats} alternating runs, each a fresh process"
    )
    print(
        f"{'case':<14} {'epoch s':>8} {'objects/s':>10} {'vs 1x1':>7} {'whole run s':>12} {'peak RSS MB':>14}"
    )
    for name, results in runs.items():
        best = min(results, key=lambda r: r["epoch"])
        whole = min(r["whole"] for r in results)
        rss = "/".join(f"{value:.0f}" for value in best["rss"])
        print(
            f"{name:<14} {best['epoch']:>8.2f} {best['rate']:>10.1f} {best['rate'] / unit:>7.2f} "
            f"{whole:>12.1f} {rss:>14}"
        )


if __name__ == "__main__":
    main()
