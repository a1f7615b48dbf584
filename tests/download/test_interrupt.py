"""``kill -9`` of a real ``hyrax download`` mid-run, twice, then a run that completes: every object x filter
exactly once in the manifest and on disk, every file whole, nothing half-written counted as done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hyrax.download import manifest
from hyrax.download.fits_check import image_shape_of
from tests.download.conftest import check_cutouts
from tests.download.das_server import PASSWORD, Faults
from tests.fault_table import record_landing


def start_download(config_file, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "hyrax", "download", "-c", str(config_file)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_after(process, data_dir, files: int, limit: float = 60.0) -> None:
    """SIGKILL the process once ``files`` cutouts are on disk (it must still be running then)."""
    deadline = time.monotonic() + limit
    while len(list(data_dir.glob("*.fits"))) < files:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the download did not get going"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def assert_done_rows_are_whole_files(data_dir) -> int:
    """What an interrupted run left: consolidated, each done row names a complete FITS file."""
    with manifest.locked(data_dir):
        manifest.consolidate(data_dir)
    rows = manifest.read_manifest(data_dir)
    assert not rows.duplicated(["object_id", "filter"]).any()
    for file in rows.loc[rows.status == "done", "file"]:
        assert image_shape_of((data_dir / file).read_bytes()) == (32, 32), file
    return int((rows.status == "done").sum())


def download_config(write_config, tmp_path, url, catalog_path):
    """Two filters, 4 cutouts a request, 3 connections, into tmp_path/data."""
    return write_config(
        f"""
        [general]
        data_dir = "{tmp_path / "data"}"
        results_dir = "{tmp_path / "results"}"
        [download]
        service_url = "{url}"
        fits_file = "{catalog_path}"
        filter = ["HSC-G", "HSC-I"]
        username = "alice"
        password = "{PASSWORD}"
        chunk_size = 4
        concurrent_connections = 3
        retry_wait = 0.01
        """
    )


def test_kill_9_mid_download_then_resume(service, catalog, write_config, tmp_path, hyrax_download):
    running = service(Faults(member_delay=0.03))
    path, table = catalog(30)
    data = tmp_path / "data"
    config_file = download_config(write_config, tmp_path, running.url, path)
    recorded = []
    for threshold in (6, 24):
        kill_after(start_download(config_file, tmp_path), data, threshold)
        recorded.append(assert_done_rows_are_whole_files(data))
    assert recorded[0] <= recorded[1] and 0 < recorded[1] < 60  # both kills landed mid-run
    running.faults.member_delay = 0.0
    summary = hyrax_download(running, path, chunk_size=4).download()
    assert summary.ok and summary.skipped == recorded[1] and summary.done == 60 - recorded[1]
    check_cutouts(data, table)
    assert not list(data.rglob("*.tmp")) and not (data / manifest.PARTS_DIR).exists()
    for threshold, done in zip((6, 24), recorded, strict=True):
        record_landing(
            "download",
            "kill -9 once N cutouts on disk (2 kills, then a run)",
            {"files_at_kill": threshold, "done_rows": done, "of": 60},
            "every cutout once, each file whole; nothing half-written counted done",
        )


@pytest.mark.parametrize("seed", [0, *(pytest.param(seed, marks=pytest.mark.slow) for seed in (1, 2, 3))])
def test_kill_9_at_a_seeded_random_moment_while_another_download_races(
    service, catalog, write_config, tmp_path, hyrax_download, seed
):
    """Fault injection (issue 15): a download killed at a random moment, with a second download started
    into the same folder meanwhile (refused, naming the first), then run to the end: every cutout once."""
    import random

    running = service(Faults(member_delay=0.2))
    path, table = catalog(30)
    data = tmp_path / "data"
    config_file = download_config(write_config, tmp_path, running.url, path)
    first = start_download(config_file, tmp_path)
    deadline = time.monotonic() + 60
    while not (data / manifest.LOCK_NAME).exists() or not locks_alive(data):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    # the first is halted (holding its lock) while the second starts: on a loaded machine the second's
    # start-up alone outlasted the whole first download, which then ended before the kill
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "hyrax", "download", "-c", str(config_file)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode != 0 and f"pid {first.pid}" in second.stderr + second.stdout
    wait = random.Random(seed).uniform(0.0, 1.5)  # of a download of ~4 s (60 cutouts, 0.2 s each, 3 at once)
    time.sleep(wait)
    first.kill()
    first.wait(timeout=30)
    first.stderr.close()
    done = assert_done_rows_are_whole_files(data)
    assert done < 60  # the kill landed mid-run
    running.faults.member_delay = 0.0
    summary = hyrax_download(running, path, chunk_size=4).download()
    assert summary.ok and summary.skipped == done and summary.done == 60 - done
    check_cutouts(data, table)
    assert not list(data.rglob("*.tmp")) and not (data / manifest.PARTS_DIR).exists()
    record_landing(
        "download",
        "random moment, a second download racing",
        {"wait_s": wait, "done_rows": done, "of": 60},
        "second refused naming the first's pid; run again: every cutout once",
    )


def locks_alive(data_dir) -> bool:
    from hyrax import locks

    return locks.alive(data_dir / manifest.LOCK_NAME)


# -- fault points (hyrax.faults): killed inside the manifest merge -------------------------------------


def _manifest_state(data) -> dict:
    """What a killed merge left: the manifest's done rows and the runs it says it merged, the part files
    (and their runs) still there, and merged manifests never renamed into place."""
    import json

    import pyarrow.parquet as pq

    path, parts = manifest.manifest_path(data), data / manifest.PARTS_DIR
    metadata = (pq.read_schema(path).metadata or {}) if path.is_file() else {}
    rows = manifest.read_manifest(data)
    return {
        "done": int((rows.status == "done").sum()),
        "duplicates": int(rows.duplicated(["object_id", "filter"]).sum()),
        "merged_runs": set(json.loads(metadata.get(b"hyrax_merged_parts", b"[]"))),
        "parts": len(list(parts.glob("*.parquet"))),
        "part_runs": {p.name.split("-")[0] for p in parts.glob("*.parquet")},
        "unrenamed": len(list(parts.glob(f".{manifest.MANIFEST_NAME}.*.tmp"))),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "point, at_start, size",
    [
        (point, at_start, size)
        for point in ("manifest.merge_written", "manifest.merged")
        for at_start, sizes in ((False, (10, 20, 30)), (True, (8, 16, 24)))
        for size in sizes
    ],
    ids=lambda value: {False: "end", True: "start"}.get(value, str(value)).replace("manifest.", ""),
)
def test_download_killed_inside_the_manifest_merge_resumes_every_cutout_once(
    service, catalog, write_config, tmp_path, hyrax_download, point, at_start, size
):
    """Killed in the merge that ends a download (arrival 1 of a fresh one, of SIZE objects), or in the
    merge that starts one after a kill -9 left parts (killed once SIZE of 60 cutouts were on disk): the
    merge is whole or not there, and the resume counts each part once."""
    from tests.test_fault_points import _killed_at

    running = service(Faults(member_delay=0.03 if at_start else 0.0))
    objects = 30 if at_start else size
    cutouts = 2 * objects  # two filters
    path, table = catalog(objects)
    data = tmp_path / "data"
    config_file = download_config(write_config, tmp_path, running.url, path)
    if at_start:  # a download killed mid-run: its parts are not merged yet
        kill_after(start_download(config_file, tmp_path), data, size)
        before = _manifest_state(data)
        assert before["done"] == 0 and before["parts"] > 0, before
    env = {k: v for k, v in os.environ.items() if k != "HYRAX_FAULT"}
    _killed_at(env, point, "download", "-c", config_file)
    landed = _manifest_state(data)
    assert landed["duplicates"] == 0 and landed["parts"] > 0, landed
    if point == "manifest.merge_written":  # written, never renamed: no manifest yet, the parts all kept
        assert landed["unrenamed"] == 1 and landed["done"] == 0 and not landed["merged_runs"], landed
    else:  # renamed into place: it holds the parts' rows and names their runs, the parts not yet removed
        assert landed["unrenamed"] == 0 and landed["merged_runs"] == landed["part_runs"], landed
        assert landed["done"] == (before["parts"] * 4 if at_start else cutouts), landed
    if not at_start:
        assert landed["parts"] == cutouts // 4, landed  # the whole download, 4 cutouts a request
    running.faults.member_delay = 0.0
    summary = hyrax_download(running, path, chunk_size=4).download()
    # what the parts hold (merged or not) counts once as there, the rest is fetched: nothing twice
    assert summary.ok and summary.skipped == landed["parts"] * 4 == cutouts - summary.done, str(summary)
    check_cutouts(data, table)  # every cutout once, its file whole
    assert not list(data.rglob("*.tmp")) and not (data / manifest.PARTS_DIR).exists()
    where = "the merge starting a resume" if at_start else "the merge ending a download"
    shown = {"cutouts": cutouts, **{k: v for k, v in landed.items() if k != "part_runs"}}
    shown["merged_runs"] = len(landed["merged_runs"])
    record_landing(
        "download", f"{point}:1 ({where})", shown, "resumed: every cutout once, each part counted once"
    )
    print(f"download {point} ({'start' if at_start else 'end'}): {landed}")
