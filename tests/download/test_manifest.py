"""The manifest (src/hyrax/download/manifest.py): parts, crash-safe consolidation, the lock, and
``rebuild_manifest``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pytest

from hyrax.download import manifest
from hyrax.download.manifest import PARTS_DIR, PartWriter, consolidate, locked, prepare, read_manifest
from hyrax.errors import DataError
from tests.conftest import run_hyrax
from tests.download.conftest import check_cutouts


def row(object_id, band="HSC-I", status="done", reason=None):
    return {
        "object_id": object_id,
        "filter": band,
        "status": status,
        "file": f"{object_id}_{band}.fits" if status == "done" else None,
        "reason": reason,
    }


def test_parts_merge_once_even_after_a_crash_before_their_deletion(tmp_path):
    writer = PartWriter(tmp_path)
    writer.write([row("1"), row("2")])
    writer.write([row("3", status="failed", reason="x")])
    kept = {p.name: p.read_bytes() for p in (tmp_path / PARTS_DIR).iterdir()}
    consolidate(tmp_path)
    assert read_manifest(tmp_path).object_id.tolist() == ["1", "2", "3"]
    # A crash right after the rename: the parts are still there. Merging again must not repeat them.
    (tmp_path / PARTS_DIR).mkdir()
    for name, data in kept.items():
        (tmp_path / PARTS_DIR / name).write_bytes(data)
    consolidate(tmp_path)
    assert read_manifest(tmp_path).object_id.tolist() == ["1", "2", "3"]
    assert not (tmp_path / PARTS_DIR).exists()


def test_a_half_written_part_is_never_read(tmp_path):
    PartWriter(tmp_path).write([row("1")])
    (tmp_path / PARTS_DIR / ".deadbeef-00000000.parquet.tmp").write_bytes(b"PAR1 half")
    consolidate(tmp_path)
    assert read_manifest(tmp_path).object_id.tolist() == ["1"]


def test_prepare_marks_done_and_removes_the_failures_it_will_retry(tmp_path):
    PartWriter(tmp_path).write(
        [
            row("1"),
            row("2", status="failed", reason="x"),
            row("3", status="failed"),
            row("1", "HSC-G", "failed"),
        ]
    )
    done = prepare(tmp_path, pa.array(["1", "2", "9"]), ["HSC-I"])
    assert done.tolist() == [[True], [False], [False]]
    remaining = read_manifest(tmp_path)
    # "2"/HSC-I is retried now; "3" is not in this catalog and HSC-G not in these filters: kept.
    assert sorted(zip(remaining.object_id, remaining["filter"], strict=True)) == [
        ("1", "HSC-G"),
        ("1", "HSC-I"),
        ("3", "HSC-I"),
    ]


def test_one_download_at_a_time_per_directory(tmp_path):
    with locked(tmp_path):
        script = (
            "import sys; from hyrax.download.manifest import locked\n"
            "try:\n    with locked(sys.argv[1]): pass\nexcept Exception as e: print(e)"
        )
        result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
        assert "Another hyrax download (or rebuild_manifest) is writing to" in result.stdout
        with pytest.raises(DataError, match="Another hyrax download"), locked(tmp_path):
            pass
    with locked(tmp_path):  # released
        pass


def test_rebuild_manifest_restores_the_done_rows(service, catalog, hyrax_download, tmp_path):
    path, table = catalog(5)
    h = hyrax_download(service(), path)
    h.download()
    data = tmp_path / "data"
    before = read_manifest(data).sort_values(["object_id", "filter"]).reset_index(drop=True)
    os.remove(data / "manifest.parquet")
    counts = h.rebuild_manifest()
    assert counts == {"done": 10, "failed": 0}
    after = read_manifest(data).sort_values(["object_id", "filter"]).reset_index(drop=True)
    columns = ["object_id", "filter", "file", "status", "height", "width", "tract"]
    assert after[columns].equals(before[columns])
    assert (after.ra - before.ra).abs().max() < 1e-5  # from the file name's 5 decimals


def test_rebuild_marks_unreadable_files_failed_and_the_next_download_replaces_them(
    service, catalog, hyrax_download, tmp_path
):
    path, table = catalog(3)
    running = service()
    h = hyrax_download(running, path)
    h.download()
    data = tmp_path / "data"
    victim = sorted(data.glob("*.fits"))[0]
    victim.write_bytes(victim.read_bytes()[:4000])  # damaged by hand
    (data / ".partial").mkdir()
    (data / ".partial" / victim.name).write_bytes(b"half")  # a leftover of an interrupted download
    result = run_hyrax("rebuild_manifest", "--data-dir", str(data), timeout=60)
    assert result.returncode == 0 and "5 cutouts done, 1 unreadable" in result.stdout
    rebuilt = read_manifest(data)
    assert rebuilt.loc[rebuilt.file == victim.name, "status"].item() == "failed"
    assert not (data / ".partial").exists()
    summary = h.download()
    assert (summary.done, summary.skipped) == (1, 5)
    check_cutouts(data, table)


def test_rebuild_of_a_missing_directory_says_so(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        manifest.rebuild(tmp_path / "absent")


def test_deleted_files_are_fetched_again_after_a_rebuild(service, catalog, hyrax_download, tmp_path):
    path, table = catalog(3)
    h = hyrax_download(service(), path)
    h.download()
    data = tmp_path / "data"
    for file in sorted(data.glob("*HSC-G.fits"))[:2]:
        file.unlink()
    h.rebuild_manifest()
    assert h.download().done == 2
    check_cutouts(data, table)
    shutil.rmtree(data)


def test_resume_bookkeeping_is_vectorized_at_scale(tmp_path):
    """200,000 objects x 5 filters with 300,000 rows already recorded: prepare and plan take seconds."""
    import time

    import numpy as np

    from hyrax.download.downloader import plan

    count = 200_000
    ids = pa.array([str(36411452835238206 + i) for i in range(count)])
    bands = ["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"]
    writer = PartWriter(tmp_path)
    for band, status in (("HSC-G", "done"), ("HSC-I", "done"), ("HSC-Y", "failed")):
        table = pa.table(
            {
                "object_id": ids[: count // 2],
                "filter": pa.array([band] * (count // 2)),
                "status": pa.array([status] * (count // 2)),
            }
        )
        writer.write(
            table.append_column("reason", pa.array(["x" if status == "failed" else None] * (count // 2)))
        )
    consolidate(tmp_path)
    started = time.perf_counter()
    done = prepare(tmp_path, ids, bands)
    pending = sum(len(chunk.rows) for chunk in plan(done, {}, 990))
    assert time.perf_counter() - started < 20
    assert done.sum() == count and pending == 5 * count - count
    assert np.array_equal(done[:, 0], np.arange(count) < count // 2)
    assert len(read_manifest(tmp_path, ["status"])) == count  # the failed rows went: they are retried
