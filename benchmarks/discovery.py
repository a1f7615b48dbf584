"""The discovery loop with a simulated scientist (tests/discovery/simulated.py), through the public path:
h.suggest() -> h.label() -> h.rank().

    python benchmarks/discovery.py                 # galaxies (3 thinnings) and CRTS transients (~4 min)
    python benchmarks/discovery.py --seeds 7 --classes AGN

* galaxies: the 376 bundled DECaLS galaxies with the rings thinned (seeded) to 5% of the objects;
  HyraxAutoencoder trained on them (10 epochs), its 32-d latent vectors. Each thinning seed is a run.
* transients: the 500 CRTS transients, one class as "interesting"; their light curves binned to 64
  points by NestedPandasDataset and a 1-D convolutional autoencoder (16-d latent vectors).

Each round the user labels the 10 objects h.suggest() lists, 1 for the interesting class and 0 for
the rest, then h.rank(top=50). Reported: interesting objects in the top 50 after each round, against
the outlier ranking alone (h.outliers), a seeded random order, and the base rate (its expectation).
Every case runs in a fresh process; the settings are the defaults of [rank].
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


def case(kind: str, value: str) -> dict:
    from tests.discovery.simulated import baselines, crts_hyrax, galaxy_hyrax, simulate

    with tempfile.TemporaryDirectory() as work:
        if kind == "galaxies":
            h, truth = galaxy_hyrax(Path(work), epochs=10, seed=int(value))
        else:
            h, truth = crts_hyrax(Path(work), interesting=value, epochs=10)
        base = baselines(h, truth, TOP)
        rounds = simulate(h, truth, ROUNDS, PER_ROUND, TOP)
    return {
        "kind": kind,
        "value": value,
        **{k: float(v) for k, v in base.items()},
        "rounds": [int(r["found"]) for r in rounds],
    }


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
        f"\nInteresting objects in the top {TOP} (precision@{TOP} = that / {TOP}); the user labels {PER_ROUND} "
        f"suggested objects a round; [rank] defaults\n"
    )
    header = (
        f"{'data':<24} {'objects':>7} {'base':>5} {'random':>6} {'outliers':>8} "
        + " ".join(f"{'r' + str(r):>4}" for r in range(ROUNDS + 1))
        + f" {'x base':>6} {'x outl.':>7}"
    )
    print(header)
    for row in rows:
        name = f"rings, thinning {row['value']}" if row["kind"] == "galaxies" else f"CRTS {row['value']}"
        last = row["rounds"][-1]
        print(
            f"{name:<24} {row['objects']:>7.0f} {row['base']:>5.1f} {row['random']:>6.0f} {row['outliers']:>8.0f} "
            + " ".join(f"{v:>4}" for v in row["rounds"])
            + f" {last / row['base']:>6.1f} {last / max(row['outliers'], 1):>7.1f}"
        )
    print(
        "\n(r0: before any label, the ranking is the outlier ranking's order of relevance ties; x outl.: after "
        "round 5 over the outlier ranking alone, which counts at least 1)"
    )


if __name__ == "__main__":
    main()
