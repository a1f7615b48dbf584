"""Latent-space tools at 1,000,000 64-d vectors. Prints one table.

    python benchmarks/latent.py [--rows 1000000] [--queries 200]

Data: "clustered" (100 clusters on a 10-d subspace plus noise, like real latents) and "random"
(Gaussian, the worst case for any approximate index). Each case runs in its own process (peak RSS is
its own):
- the default backend (lance): build time, search latency (median, p95) for k=10 and recall@10
  against exact search (faiss IndexFlatL2);
- insert rate of the lance table against chromadb on the same vectors (chromadb on a 20,000 subset:
  at ~1.5k vectors/s the full million would take 11 minutes);
- bulk outlier scores (k-th neighbour distance) for every object, time and peak RSS;
- reduce_dimensions with UMAP: fit on 10,000, place all rows; time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import peak_rss_mb, run_case


def vectors(kind: str, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((rows, 64), dtype=np.float32)
    basis = rng.standard_normal((10, 64)).astype(np.float32)
    centres = rng.standard_normal((100, 10)).astype(np.float32) * 4
    labels = rng.integers(0, 100, rows)
    low = centres[labels] + rng.standard_normal((rows, 10), dtype=np.float32)
    return (low @ basis + 0.1 * rng.standard_normal((rows, 64), dtype=np.float32)).astype(np.float32)


def ids_of(rows: int) -> np.ndarray:
    return np.char.add("obj", np.arange(rows).astype(str))


def write_run(directory: Path, data: np.ndarray) -> float:
    from hyrax.results.store import ResultWriter

    start = time.perf_counter()
    with ResultWriter(directory, (64,), "float32") as writer:
        ids = ids_of(len(data))
        for begin in range(0, len(data), 100_000):
            writer.write(ids[begin : begin + 100_000], data[begin : begin + 100_000])
    return len(data) / (time.perf_counter() - start)


def case_search(kind: str, rows: int, queries: int) -> dict:
    import faiss

    from hyrax.vector_db.lance_index import LanceIndex

    data = vectors(kind, rows)
    with tempfile.TemporaryDirectory() as work:
        run = Path(work)
        insert_rate = write_run(run, data)
        index = LanceIndex(run / "vector_db", results_dir=run)
        start = time.perf_counter()
        built = index.build()
        build = time.perf_counter() - start
        rng = np.random.default_rng(1)
        picks = rng.choice(rows, queries, replace=False)
        probes = data[picks] + 0.05 * rng.standard_normal((queries, 64), dtype=np.float32)
        exact = faiss.IndexFlatL2(64)
        exact.add(data)
        _, truth = exact.search(probes, 10)
        latencies, hits = [], 0
        for query, expected in zip(probes, truth, strict=True):
            began = time.perf_counter()
            found, _ = index.search(query, k=10)
            latencies.append((time.perf_counter() - began) * 1000)
            hits += len(set(found[0]) & {f"obj{i}" for i in expected})
    latencies.sort()
    return {
        "build": build,
        "built": built,
        "median_ms": latencies[len(latencies) // 2],
        "p95_ms": latencies[int(0.95 * len(latencies))],
        "recall": hits / (10 * queries),
        "insert_rate": insert_rate,
        "rss": peak_rss_mb(),
    }


def case_chroma(rows: int) -> dict:
    from hyrax.vector_db.chroma_index import ChromaIndex

    data = vectors("clustered", rows)
    with tempfile.TemporaryDirectory() as work:
        index = ChromaIndex(Path(work) / "db")
        start = time.perf_counter()
        index.insert(ids_of(rows), data)
        rate = rows / (time.perf_counter() - start)
    return {"rate": rate, "rss": peak_rss_mb()}


def case_outliers(rows: int) -> dict:
    from hyrax.vector_db.outliers import score_run

    data = vectors("clustered", rows)
    with tempfile.TemporaryDirectory() as work:
        write_run(Path(work), data)
        del data
        start = time.perf_counter()
        score_run(Path(work), "knn", 10)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss": peak_rss_mb()}


def case_umap(rows: int) -> dict:
    from hyrax.reduce.umap import UMAPReducer

    data = vectors("clustered", rows)
    sample = data[np.random.default_rng(0).choice(rows, 10_000, replace=False)]
    start = time.perf_counter()
    reducer = UMAPReducer(seed=0).fit(sample)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    for begin in range(0, rows, 65536):
        reducer.transform(data[begin : begin + 65536])
    place = time.perf_counter() - start
    # Faithfulness of the placement: for 2,000 fitted points, placed coordinates vs UMAP's own transform.
    check = data[:2000]
    started = time.perf_counter()
    own = reducer_umap_transform(reducer, check)
    own_rate = len(check) / (time.perf_counter() - started)
    placed = reducer.transform(check)
    from sklearn.manifold import trustworthiness

    return {
        "fit": fit,
        "place": place,
        "rss": peak_rss_mb(),
        "own_rate": own_rate,
        "trust_placed": trustworthiness(check, placed, n_neighbors=10),
        "trust_umap": trustworthiness(check, own, n_neighbors=10),
    }


def reducer_umap_transform(reducer, points):
    """umap-learn's own transform on a model refitted identically (for comparison only)."""
    import umap

    model = umap.UMAP(n_components=reducer.n_components, random_state=reducer.seed).fit(
        reducer.arrays["sample"]
    )
    return model.transform(points)


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
        if name == "search":
            print(json.dumps(case_search(values[0], int(values[1]), int(values[2]))))
        else:
            print(
                json.dumps(
                    {"chroma": case_chroma, "outliers": case_outliers, "umap": case_umap}[name](
                        int(values[0])
                    )
                )
            )
        return
    rows = []
    lance_rate = None
    for kind in ("clustered", "random"):
        r = run_case(__file__, "search", kind, args.rows, args.queries)
        lance_rate = lance_rate or r["insert_rate"]
        rows.append(
            (
                f"lance {kind} {args.rows:,}: build",
                f"{r['build']:.0f} s",
                r["built"][:44],
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
                "against faiss exact search",
                ">= 0.95",
                r["rss"],
            )
        )
    c = run_case(__file__, "chroma", args.chroma_rows)
    rows.append(
        (
            "insert rate: lance table",
            f"{lance_rate:,.0f}/s",
            f"chromadb {c['rate']:,.0f}/s",
            f"{lance_rate / c['rate']:.0f}x (>= 50x)",
            c["rss"],
        )
    )
    o = run_case(__file__, "outliers", args.rows)
    rows.append(
        (
            f"outlier scores, {args.rows:,} objects",
            f"{o['seconds']:.0f} s",
            "k=10 neighbour distance, faiss",
            "< 600 s, < 4 GB",
            o["rss"],
        )
    )
    u = run_case(__file__, "umap", args.rows)
    rows.append(
        (
            f"UMAP fit 10,000 + place {args.rows:,}",
            f"{u['fit'] + u['place']:.0f} s",
            f"fit {u['fit']:.0f} s, place {u['place']:.1f} s",
            "",
            u["rss"],
        )
    )
    rows.append(
        (
            "  placement vs umap-learn transform",
            f"{u['trust_placed']:.3f}",
            f"umap transform {u['trust_umap']:.3f} at {u['own_rate']:.0f}/s",
            "trustworthiness@10",
            u["rss"],
        )
    )
    print(f"\n{'case':<40} {'result':>12}  {'reference':<46} {'target':<20} {'peak RSS':>9}")
    for case, result, reference, target, rss in rows:
        print(f"{case:<40} {result:>12}  {reference:<46} {target:<20} {rss:>6.0f} MB")


if __name__ == "__main__":
    main()
