"""Rubin cutouts: h.download() with download.service = "lsst" against a local SODA service. One table.

    python benchmarks/soda_download.py          # 600 objects x 3 bands, 1 and 4 connections, a service
                                                # answering at once and one taking 20 ms a request (~3 min)
    python benchmarks/soda_download.py --objects 2000 --latency-ms 0 50 --repeats 1

How it is fair: the service (tests/download/soda_server.py, the one the tests use, cutting real HSC
scenes) runs in its own process, so its CPU is not counted; it cuts each distinct (image, position) once
and keeps the answer (the catalog repeats 200 positions under distinct object ids), and an untimed bare
run fills that cache before any measured run, so the figures are the client's ceiling, not Rubin's
speed. ``--latency-ms`` makes every request wait that long in the service, as a distant one does: then
connections overlap the waiting. The reference is a bare client making the same requests (same
connections, one kept-alive http.client connection per thread, GET, one write and rename per cutout; no
FITS check, no manifest, no retries). Every measured run is a fresh process writing into an empty
directory; both first fetch the same 2 objects untimed (imports, first connections); the four cases run
--repeats times in rotating order and the best wall time and least CPU of each are kept. For Hyrax the
whole h.download() call is timed (catalog, manifest, requests, checks, atomic writes, manifest parts).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import best_of, peak_rss_mb, run_alternating, run_case

REPO = Path(__file__).resolve().parents[1]
BANDS = ["g", "r", "i"]
SIZE = "2.5asec"


def start_service(latency: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.download.soda_server", "--latency", str(latency)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().strip()


def write_catalog(objects: int, directory: Path) -> Path:
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from tests.download.soda_server import dataset_id, read_scenes, scene_centres

    positions = scene_centres(read_scenes(), per_side=10, margin=8)  # 200 positions
    rows = []
    for number in range(objects):
        scene, ra, dec = positions[number % len(positions)]
        row = {"object_id": str(30_000_000 + number), "ra": ra, "dec": dec}
        row.update({f"image_id_{band}": dataset_id(scene, band) for band in BANDS})
        rows.append(row)
    path = directory / "catalog.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def case_hyrax(url: str, catalog: str, connections: int) -> dict:
    import os

    import hyrax.download.downloader  # noqa: F401 - imports outside the timing
    from hyrax import Hyrax
    from tests.download.soda_server import TOKEN

    os.environ["RSP_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory() as work:
        h = Hyrax(setup_logging=False)
        for key, value in {
            "general.data_dir": f"{work}/data",
            "general.results_dir": f"{work}/results",
            "download.service": "lsst",
            "download.lsst.service_url": url,
            "download.fits_file": catalog,
            "download.filter": BANDS,
            "download.sw": SIZE,
            "download.sh": SIZE,
            "download.concurrent_connections": connections,
        }.items():
            h.set_config(key, value)
        h.set_config("download.num_sources", 2)  # untimed: imports, first connections
        h.download()
        h.set_config("download.offset", 2)
        h.set_config("download.num_sources", -1)
        wall, cpu = time.perf_counter(), time.process_time()
        summary = h.download()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert summary.ok, str(summary)
        return {"cutouts": summary.done, "wall": wall, "cpu": cpu, "rss": peak_rss_mb()}


def case_bare(url: str, catalog: str, connections: int) -> dict:
    """The same requests with nothing but the protocol: the floor a client can reach."""
    import http.client
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlencode, urlsplit

    import pandas as pd

    from tests.download.soda_server import TOKEN

    table = pd.read_parquet(catalog)
    radius = 2.5 / 3600 / 2
    requests = [
        (
            f"{row.object_id}_{band}",
            getattr(row, f"image_id_{band}"),
            f"CIRCLE {row.ra!r} {row.dec!r} {radius!r}",
        )
        for row in table.itertuples()
        for band in BANDS
    ]
    parts = urlsplit(url)
    local = threading.local()

    def fetch(request, directory: str) -> int:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        name, image_id, pos = request
        query = urlencode([("ID", image_id), ("POS", pos)])
        local.connection.request("GET", f"{parts.path}?{query}", headers={"Authorization": f"Bearer {TOKEN}"})
        data = local.connection.getresponse().read()
        with open(f"{directory}/{name}.tmp", "wb") as handle:
            handle.write(data)
        os.replace(f"{directory}/{name}.tmp", f"{directory}/{name}.fits")
        return 1

    with tempfile.TemporaryDirectory() as directory, ThreadPoolExecutor(connections) as pool:
        # the same untimed warm-up: the first 2 objects
        list(pool.map(fetch, requests[: 2 * len(BANDS)], [directory] * (2 * len(BANDS))))
        rest = requests[2 * len(BANDS) :]
        wall, cpu = time.perf_counter(), time.process_time()
        cutouts = sum(pool.map(fetch, rest, [directory] * len(rest)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"cutouts": cutouts, "wall": wall, "cpu": cpu, "rss": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=600, help="objects (3 bands each)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case; the best is kept")
    parser.add_argument(
        "--latency-ms", type=float, nargs="+", default=[0.0, 20.0], help="service wait per request"
    )
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, url, catalog, connections = args.case
        sys.path.insert(0, str(REPO))
        function = {"hyrax": case_hyrax, "bare": case_bare}[name]
        print(json.dumps(function(url, catalog, int(connections))))
        return
    for latency in args.latency_ms:
        table(args, latency)


def table(args: argparse.Namespace, latency_ms: float) -> None:
    service, url = start_service(latency_ms / 1000)
    best: dict[tuple[str, int], dict] = {}
    try:
        with tempfile.TemporaryDirectory() as work:
            catalog = write_catalog(args.objects, Path(work))
            run_case(__file__, "bare", url, catalog, 4)  # fills the service's cache, untimed
            sides = {(name, c): (name, url, catalog, c) for c in (1, 4) for name in ("bare", "hyrax")}
            for side, runs in run_alternating(__file__, sides, args.repeats).items():
                best[side] = best_of(runs)
    finally:
        service.terminate()
        service.wait()
    print(
        f"\n{args.objects:,} objects x {len(BANDS)} bands, {SIZE} circles (15x15 float32 IMAGE + MASK + VARIANCE, "
        f"~20 KB each; the first 2 objects untimed), local SODA service in its own process waiting "
        f"{latency_ms:g} ms a request; best of {args.repeats} rotating runs, each a fresh process\n"
    )
    print(
        f"{'client':<8} {'connections':>11} {'cutouts/s':>10} {'vs bare':>8} {'CPU ms/cutout':>14} {'peak RSS':>9}"
    )
    for connections in (1, 4):
        bare = best[("bare", connections)]
        for name in ("bare", "hyrax"):
            r = best[(name, connections)]
            rate = r["cutouts"] / r["wall"]
            ratio = rate / (bare["cutouts"] / bare["wall"])
            print(
                f"{name:<8} {connections:>11} {rate:>10,.0f} {ratio:>8.2f} "
                f"{1000 * r['cpu'] / r['cutouts']:>14.3f} {r['rss']:>6.0f} MB"
            )


if __name__ == "__main__":
    main()
