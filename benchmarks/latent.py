"""Latent-space tools at 1,000,000 64-d vectors. Prints one table.

    python benchmarks/latent.py [--rows 1000000] [--queries 200] [--chroma-rows 20000]

How it is fair: every figure is a public verb on a complete infer run directory written as a user's
`hyrax infer` leaves it (RunDir + the results table), found through ``[results] inference_dir``:
h.save_to_database() and h.database_connection().search_by_vector() for search, h.outliers() for the
outlier scores, h.reduce_dimensions() (reduce_dimensions.name = "umap") for the map. The runs are
written, and the exact neighbours found, by a separate process beforehand, so each measured process
holds only what the verb holds (its peak RSS is the verb's own). Search queries are held out: N + Q
vectors are drawn from one generator, the first N are indexed and the last Q are the queries, so no
query is a copy or near-copy of an indexed point. The two vector databases are compared on the same N
vectors, each in a fresh process, both building an approximate index (lance's index_threshold set to
0, as chromadb always builds one; lance with its defaults, which builds none at that size, is shown
apart). UMAP's placement is checked on held-out objects (not in the fit sample) against umap-learn's
own transform (its numba compilation done first) of a model fitted on the same sample.

Data: "clustered" (100 clusters on a 10-d subspace plus noise, like real latents) and "random"
(Gaussian, the worst case for any approximate index). Cases:
- the default backend (lance): h.save_to_database() time, search latency (median, p95) for k=10 and
  recall@10 against exact search (faiss IndexFlatL2 over the indexed vectors);
- h.save_to_database() rate, lance against chromadb, on --chroma-rows vectors (chromadb at ~1.5k
  vectors/s would take 11 minutes for a million);
- h.outliers(top=10): scores for every object and the top 10, time and peak RSS;
- h.reduce_dimensions() with UMAP (fit on reduce_dimensions.umap.fit_sample_size, place every row; the
  numba compilation of a fresh process included, as a user meets it), and the same with the fitted
  reducer reused (reduce_dimensions.model_path: placement only).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import peak_rss_mb, run_case

HELD_OUT_CHECK = 2000  # objects outside UMAP's fit sample on which placement is checked


def vectors(kind: str, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((rows, 64), dtype=np.float32)
    basis = rng.standard_normal((10, 64)).astype(np.float32)
    centres = rng.standard_normal((100, 10)).astype(np.float32) * 4
    labels = rng.integers(0, 100, rows)
    low = centres[labels] + rng.standard_normal((rows, 10), dtype=np.float32)
    return (low @ basis + 0.1 * rng.standard_normal((rows, 64), dtype=np.float32)).astype(np.float32)


def hyrax_on(run: str, results_dir: str | None = None):
    """A Hyrax whose verbs read the infer run ``run`` (and write their own runs in ``results_dir``)."""
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("results.inference_dir", run)
    h.set_config("general.results_dir", results_dir or str(Path(run).parent))
    return h


def case_make(directory: str, kind: str, rows: int, queries: int) -> dict:
    """A complete infer run of the first ``rows`` of ``rows + queries`` vectors; the last ``queries`` are
    saved as held-out queries, with their exact 10 nearest indexed neighbours."""
    from hyrax.config import ConfigManager
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultWriter

    directory = Path(directory)
    data = vectors(kind, rows + queries)
    indexed, held_out = data[:rows], data[rows:]
    config = ConfigManager().config
    config["general"]["results_dir"] = str(directory / "results")
    with RunDir.create(config, "infer") as run, ResultWriter(run.path, (64,), "float32") as writer:
        for begin in range(0, rows, 100_000):
            ids = np.char.add("obj", np.arange(begin, min(begin + 100_000, rows)).astype(str))
            writer.write(ids, indexed[begin : begin + 100_000])
    if queries:
        import faiss

        exact = faiss.IndexFlatL2(64)
        exact.add(indexed)
        _, truth = exact.search(held_out, 10)
        np.save(directory / "queries.npy", held_out)
        np.save(directory / "truth.npy", truth)
    return {"run": str(run.path)}


def case_search(run: str, directory: str) -> dict:
    h = hyrax_on(run)
    queries = np.load(Path(directory) / "queries.npy")
    truth = np.load(Path(directory) / "truth.npy")
    start = time.perf_counter()
    h.save_to_database()
    build = time.perf_counter() - start
    connection = h.database_connection()
    latencies, hits = [], 0
    for query, expected in zip(queries, truth, strict=True):
        began = time.perf_counter()
        found = connection.search_by_vector([query], k=10)[0]
        latencies.append((time.perf_counter() - began) * 1000)
        hits += len(set(found) & {f"obj{i}" for i in expected})
    latencies.sort()
    threshold = int(h.config["vector_db"]["lance"]["index_threshold"])
    return {
        "build": build,
        "built": "IVF_PQ index" if connection.index.count() >= threshold else "exact (below index_threshold)",
        "median_ms": latencies[len(latencies) // 2],
        "p95_ms": latencies[int(0.95 * len(latencies))],
        "recall": hits / (10 * len(queries)),
        "rss": peak_rss_mb(),
    }


def case_save(run: str, backend: str) -> dict:
    """h.save_to_database() with ``backend`` ("lance-default": lance as configured by default, which
    builds no index below vector_db.lance.index_threshold; "lance": made to build its ANN index)."""
    h = hyrax_on(run)
    h.set_config("vector_db.name", backend.removesuffix("-default"))
    if backend == "lance":
        h.set_config("vector_db.lance.index_threshold", 0)
    start = time.perf_counter()
    connection = h.save_to_database()
    seconds = time.perf_counter() - start
    return {"rate": connection.index.count() / seconds, "rss": peak_rss_mb()}


def case_outliers(run: str) -> dict:
    h = hyrax_on(run)
    start = time.perf_counter()
    top = h.outliers(top=10)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "listed": len(top), "rss": peak_rss_mb()}


def case_umap(run: str, results_dir: str) -> dict:
    h = hyrax_on(run, results_dir)
    h.set_config("reduce_dimensions.name", "umap")
    start = time.perf_counter()
    reduced = h.reduce_dimensions()
    seconds = time.perf_counter() - start
    rss = peak_rss_mb()  # before the check below, which fits umap-learn again
    return {
        "seconds": seconds,
        "rss": rss,
        "reduce_run": str(reduced.data_location),
        **placement_check(run, reduced),
    }


def placement_check(run: str, reduced) -> dict:
    """Trustworthiness@10 of the map's coordinates of objects outside the fit sample, and of umap-learn's
    own transform of the same objects by a model fitted on the same sample with the same settings."""
    import umap
    from sklearn.manifold import trustworthiness

    from hyrax.results.store import ResultDataset

    saved = Path(reduced.data_location) / "reducer"
    settings = json.loads((saved / "reducer.json").read_text())
    with np.load(saved / "reducer.npz") as arrays:
        sample = arrays["sample"]
    fitted = {row.tobytes() for row in sample}
    results = ResultDataset(data_location=run)
    candidates = np.arange(min(len(results), 20 * HELD_OUT_CHECK + len(sample)))
    data = results[candidates].reshape(len(candidates), -1)
    held_out = np.array([row for row in candidates if data[row].tobytes() not in fitted][:HELD_OUT_CHECK])
    points = data[held_out]
    placed = reduced[held_out]
    model = umap.UMAP(
        n_components=settings["n_components"], random_state=settings["seed"], **settings["kwargs"]
    ).fit(sample)
    model.transform(points[:10])  # numba compiles transform on its first call: not counted in its rate
    began = time.perf_counter()
    own = model.transform(points)
    own_rate = len(points) / (time.perf_counter() - began)
    return {
        "checked": len(points),
        "own_rate": own_rate,
        "trust_placed": trustworthiness(points, placed, n_neighbors=10),
        "trust_umap": trustworthiness(points, own, n_neighbors=10),
    }


def case_place(run: str, results_dir: str, reducer: str) -> dict:
    h = hyrax_on(run, results_dir)
    h.set_config("reduce_dimensions.name", "umap")
    h.set_config("reduce_dimensions.model_path", reducer)
    start = time.perf_counter()
    h.reduce_dimensions()
    return {"seconds": time.perf_counter() - start, "rss": peak_rss_mb()}


CASES = {
    "make": case_make,
    "search": case_search,
    "save": case_save,
    "outliers": case_outliers,
    "umap": case_umap,
    "place": case_place,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--chroma-rows", type=int, default=20_000)
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, *values = args.case
        print(json.dumps(CASES[name](*(int(v) if v.isdigit() else v for v in values))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)

        def make(name: str, kind: str, count: int, queries: int = 0) -> str:
            (work / name).mkdir()
            return run_case(__file__, "make", work / name, kind, count, queries)["run"]

        for kind in ("clustered", "random"):
            r = run_case(__file__, "search", make(kind, kind, args.rows, args.queries), work / kind)
            rows.append(
                (
                    f"lance {kind} {args.rows:,}: save_to_database",
                    f"{r['build']:.0f} s",
                    r["built"],
                    "< 300 s",
                    r["rss"],
                )
            )
            rows.append(
                (
                    f"lance {kind}: search k=10",
                    f"{r['median_ms']:.1f} ms",
                    f"p95 {r['p95_ms']:.1f} ms",
                    "< 20 ms",
                    r["rss"],
                )
            )
            rows.append(
                (
                    f"lance {kind}: recall@10",
                    f"{r['recall']:.3f}",
                    f"{args.queries} held-out queries vs exact search",
                    ">= 0.95",
                    r["rss"],
                )
            )
        saved = {
            backend: run_case(
                __file__, "save", make(f"save-{backend}", "clustered", args.chroma_rows), backend
            )
            for backend in ("lance", "chromadb", "lance-default")
        }
        lance, chroma = saved["lance"], saved["chromadb"]
        rows.append(
            (
                f"save_to_database {args.chroma_rows:,}: lance",
                f"{lance['rate']:,.0f}/s",
                f"chromadb {chroma['rate']:,.0f}/s (RSS {chroma['rss']:,.0f} MB)",
                f"{lance['rate'] / chroma['rate']:.0f}x (>= 50x)",
                lance["rss"],
            )
        )
        rows.append(
            (
                "  lance with its default settings",
                f"{saved['lance-default']['rate']:,.0f}/s",
                "no index below index_threshold (exact search)",
                "",
                saved["lance-default"]["rss"],
            )
        )
        o = run_case(__file__, "outliers", make("outliers", "clustered", args.rows))
        rows.append(
            (
                f"h.outliers(top=10), {args.rows:,} objects",
                f"{o['seconds']:.0f} s",
                f"k-th neighbour distance, {o['listed']} listed",
                "< 600 s, < 4 GB",
                o["rss"],
            )
        )
        umap_run = make("umap", "clustered", args.rows)
        u = run_case(__file__, "umap", umap_run, work / "umap" / "results")
        p = run_case(
            __file__, "place", umap_run, work / "umap" / "results", Path(u["reduce_run"]) / "reducer"
        )
    rows.append(
        (
            f"h.reduce_dimensions() umap, {args.rows:,}",
            f"{u['seconds']:.0f} s",
            "fit on a sample (numba compile incl.), place every row",
            "",
            u["rss"],
        )
    )
    rows.append(
        (
            "  placement reused (model_path)",
            f"{p['seconds']:.1f} s",
            f"{args.rows / p['seconds']:,.0f} objects/s",
            "",
            p["rss"],
        )
    )
    rows.append(
        (
            f"  trustworthiness@10, {u['checked']:,} held out",
            f"{u['trust_placed']:.3f}",
            f"umap-learn transform {u['trust_umap']:.3f} at {u['own_rate']:.0f}/s",
            "close to umap-learn",
            u["rss"],
        )
    )
    print(f"\n{'case':<40} {'result':>12}  {'reference':<50} {'target':<20} {'peak RSS':>9}")
    for case, result, reference, target, rss in rows:
        print(f"{case:<40} {result:>12}  {reference:<50} {target:<20} {rss:>6.0f} MB")


if __name__ == "__main__":
    main()
