"""The tables of docs/scaling.md, from the results that ``benchmarks/scale.py --keep`` left.

    python benchmarks/scale_report.py [--work-root benchmarks/.data] [--small 1000000] [--large 10000000]

Prints: the must-show checks at ``--large`` against ``--small``, and a plan for 100M objects from the
measured per-object costs (memory: the large peak plus its growth per object since the small one, times
the objects added; time: the large wall time scaled by the exponent measured between the two sizes, or
linearly where the measured exponent is below 1; disk: bytes per object at the large size).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ["infer", "index", "umap", "pca", "outliers", "map", "lookup"]
TARGET = 100_000_000


def load(root: Path, count: int) -> dict[str, dict]:
    work = root / f"scale-{count}"
    found = {}
    for stage in STAGES + ["recall"]:
        path = work / f"results-{stage}.json"
        if path.is_file():
            found[stage] = json.loads(path.read_text())
    return found


def checks(small: dict, large: dict, n_small: int, n_large: int) -> list[str]:
    rows = ["| check | 1M | 10M | target | met |", "|---|---|---|---|---|"]

    def add(what, a, b, target, ok):
        rows.append(f"| {what} | {a} | {b} | {target} | {'yes' if ok else '**no**'} |")

    for stage in ["infer", "index", "umap", "pca", "lookup"]:
        if stage in small and stage in large:
            a, b = small[stage]["rss"], large[stage]["rss"]
            add(f"{stage}: peak RSS MB", f"{a:.0f}", f"{b:.0f} ({b / a:.2f}x)", "<= 1.25x", b <= 1.25 * a)
    for stage in ["outliers", "map"]:
        if stage in small and stage in large:
            a, b = small[stage]["rss"], large[stage]["rss"]
            per = (b - a) * 2**20 / (n_large - n_small)
            add(
                f"{stage}: peak RSS MB",
                f"{a:.0f}",
                f"{b:.0f} (+{per:.0f} B/object)",
                "<= +64 B/object",
                per <= 64,
            )
    for key, what in [("thumb_ms", "thumbnail"), ("neighbours_ms", "neighbours")]:
        if "map" in small and "map" in large:
            a, b = small["map"][key], large["map"][key]
            add(f"{what}: median ms", f"{a:.1f}", f"{b:.1f}", "< 50 and <= 2x", b < 50 and b <= 2 * a)
    if "lookup" in small and "lookup" in large:
        a, b = small["lookup"]["lookup_ms"], large["lookup"]["lookup_ms"]
        add("h.lookup: median ms", f"{a:.1f}", f"{b:.1f}", "< 50 and <= 2x", b < 50 and b <= 2 * a)
    if "outliers" in large:
        b = large["outliers"]["wall"] / 60
        add("outliers: minutes", f"{small['outliers']['wall'] / 60:.1f}", f"{b:.1f}", "< 30", b < 30)
    if "recall" in large:
        b = large["recall"]["recall"]
        add(
            "outliers: recall (within 1%)", f"{small['recall']['recall']:.3f}", f"{b:.3f}", ">= 0.9", b >= 0.9
        )
    if "umap" in large:
        b = large["umap"]["wall"] / 60
        add("UMAP placement: minutes", f"{small['umap']['wall'] / 60:.1f}", f"{b:.1f}", "< 15", b < 15)
    return rows


def plan(small: dict, large: dict, n_small: int, n_large: int) -> list[str]:
    rows = [
        "| stage | time exponent (1M->10M) | hours at 100M (this machine) | peak RSS GB at 100M | disk GB at 100M |",
        "|---|---|---|---|---|",
    ]
    for stage in STAGES:
        if stage not in small or stage not in large or stage == "lookup":
            continue
        a, b = small[stage], large[stage]
        exponent = math.log(b["wall"] / a["wall"]) / math.log(n_large / n_small)
        scale = max(1.0, exponent)
        hours = b["wall"] * (TARGET / n_large) ** scale / 3600
        growth = max(0.0, (b["rss"] - a["rss"]) / (n_large - n_small))  # MB per object
        rss = (b["rss"] + growth * (TARGET - n_large)) / 1024
        disk = b.get("disk")
        disk_text = f"{disk / n_large * TARGET / 1e9:.1f}" if disk else "-"
        rows.append(f"| {stage} | {exponent:.2f} | {hours:.2f} | {rss:.2f} | {disk_text} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-root", type=Path, default=HERE / ".data")
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    args = parser.parse_args()
    small, large = load(args.work_root, args.small), load(args.work_root, args.large)
    print("\n".join(checks(small, large, args.small, args.large)))
    print()
    print("\n".join(plan(small, large, args.small, args.large)))


if __name__ == "__main__":
    main()
