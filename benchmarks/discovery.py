"""The discovery loop with a simulated scientist (tests/discovery/simulated.py), through the public path:
h.suggest() -> h.label() -> h.rank().

    python benchmarks/discovery.py                 # galaxies (3 thinnings) and CRTS transients (~6 min)
    python benchmarks/discovery.py --seeds 7 --classes AGN

* galaxies: the 376 bundled DECaLS galaxies with the rings thinned (seeded) to 5% of the objects;
  HyraxAutoencoder trained on them (10 epochs), its 32-d latent vectors. Each thinning seed is a run.
* transients: the 500 CRTS transients, one class as "interesting"; their light curves binned to 64
  points by NestedPandasDataset and a 1-D convolutional autoencoder (16-d latent vectors).

Each round the user labels the 10 objects h.suggest() shows, and only those, 1 for the interesting class
and 0 for the rest, then h.rank(top=50); five rounds, 50 labels. Reported after the last round, for the
ranking and for the outlier ranking alone (h.outliers) and a seeded random order counted the same way:
"new", interesting objects in the top 50 that the user has NOT labelled (what the list adds to what the
user has seen), and "all", every interesting object in the top 50, labelled ones included (the figure
this benchmark printed before issue 27). "seen": interesting objects among the 50 the user labelled.
Each case runs the loop twice on one trained model, with fresh labels: rank.cover = 0 (suggestions by
acquisition alone, the loop before issue 27) and the default. Every case runs in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _harness import run_case

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ROUNDS, PER_ROUND, TOP = 5, 10, 50
COVERS = (0.0, 0.3)  # rank.cover: acquisition alone (before issue 27), the default


def case(kind: str, value: str) -> dict:
    import shutil

    from hyrax.discovery.labels import labels_path
    from tests.discovery.simulated import baselines, counted, crts_hyrax, galaxy_hyrax, simulate

    with tempfile.TemporaryDirectory() as work:
        if kind == "galaxies":
            h, truth = galaxy_hyrax(Path(work), epochs=10, seed=int(value))
        else:
            h, truth = crts_hyrax(Path(work), interesting=value, epochs=10)
        base = baselines(h, truth, TOP)
        loops = {}
        for cover in COVERS:
            shutil.rmtree(labels_path(h.config), ignore_errors=True)  # a fresh scientist
            h.set_config("rank.cover", cover)
            rounds = simulate(h, truth, ROUNDS, PER_ROUND, TOP)
            labelled = set(rounds[-1]["labelled_ids"])
            loops[str(cover)] = {
                "seen": rounds[-1]["labelled_interesting"],
                "ranking": counted(h.rank(top=TOP)["object_id"], truth, labelled),
                "outliers": counted(base["outlier_ids"], truth, labelled),
                "random": counted(base["random_ids"], truth, labelled),
                "rounds": [int(r["found"]) for r in rounds],
            }
    return {"kind": kind, "value": value, "base": base["base"], "objects": base["objects"], "loops": loops}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[7, 8, 9], help="ring thinnings")
    parser.add_argument(
        "--classes", nargs="+", default=["AGN", "Blazar"], help="CRTS classes called interesting"
    )
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(*args.case)))
        return
    rows = [run_case(__file__, "galaxies", seed) for seed in args.seeds]
    rows += [run_case(__file__, "crts", name) for name in args.classes]
    print(
        f"\nInteresting objects in the top {TOP} after {ROUNDS} rounds of {PER_ROUND} labels (the user labels "
        f"only what h.suggest() shows); new = not labelled by the user, all = labelled ones included\n"
    )
    print(
        f"{'data':<22} {'objects':>7} {'base':>5} {'cover':>5} {'seen':>4} {'ranking':>11} {'outliers':>11} "
        f"{'random':>11}   top {TOP} (all) by round"
    )
    for row in rows:
        name = f"rings, thinning {row['value']}" if row["kind"] == "galaxies" else f"CRTS {row['value']}"
        for cover, loop in row["loops"].items():
            pairs = " ".join(
                f"{loop[k]['new']:>4} / {loop[k]['found']:<4}" for k in ("ranking", "outliers", "random")
            )
            print(
                f"{name:<22} {row['objects']:>7.0f} {row['base']:>5.1f} {float(cover):>5.1f} {loop['seen']:>4} "
                f"{pairs}   {' '.join(map(str, loop['rounds']))}"
            )
    print(
        f"\n(each pair: new / all; base: the base rate's expectation in {TOP}; seen: interesting among the "
        f"{ROUNDS * PER_ROUND} labelled; cover: rank.cover)"
    )


if __name__ == "__main__":
    main()
