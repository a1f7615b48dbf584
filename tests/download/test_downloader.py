"""``h.download()`` / ``hyrax download`` end to end against a local das_cutout service: files, manifest,
resume, recorded failures, the summary and the exit code."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from hyrax.download.downloader import plan
from hyrax.download.hsc import NO_CUTOUT, AuthenticationError
from hyrax.download.manifest import read_manifest
from hyrax.errors import ConfigError, DataError
from tests.conftest import run_hyrax
from tests.download.conftest import FILTERS, check_cutouts, configure
from tests.download.das_server import PASSWORD, Faults, tract_of


def test_download_writes_every_cutout_once_and_a_summary(service, catalog, hyrax_download, tmp_path):
    running = service()
    path, table = catalog(7)
    summary = hyrax_download(running, path).download()
    assert (summary.requested, summary.done, summary.failed, summary.skipped) == (14, 14, 0, 0) and summary.ok
    manifest = check_cutouts(tmp_path / "data", table)
    assert set(manifest.columns) >= {
        "object_id",
        "filter",
        "file",
        "status",
        "height",
        "width",
        "reason",
        "ra",
    }
    with open(summary.run_dir / "download_summary.toml", "rb") as handle:
        assert tomllib.load(handle)["done"] == 14
    assert max(len(r.lines) for r in running.requests) == 5  # download.chunk_size


def test_a_second_run_skips_what_is_done(service, catalog, hyrax_download):
    running = service()
    path, _ = catalog(4)
    h = hyrax_download(running, path)
    h.download()
    sent = running.cutouts_sent
    summary = h.download()
    assert (summary.done, summary.skipped, summary.failed) == (0, 8, 0) and summary.ok
    assert running.cutouts_sent == sent


def test_more_objects_and_filters_later_fetch_only_the_new_ones(service, catalog, hyrax_download, tmp_path):
    running = service()
    path, table = catalog(6)
    h = hyrax_download(running, path, num_sources=3, filter=["HSC-G"])
    assert h.download().done == 3
    h.set_config("download.num_sources", -1)
    h.set_config("download.filter", FILTERS)
    summary = h.download()
    assert (summary.done, summary.skipped) == (9, 3)
    check_cutouts(tmp_path / "data", table)


def test_offset_and_num_sources_choose_rows(service, catalog, hyrax_download, tmp_path):
    path, table = catalog(6)
    hyrax_download(service(), path, offset=2, num_sources=3).download()
    assert sorted(read_manifest(tmp_path / "data").object_id.unique()) == sorted(table.object_id[2:5])


def test_failures_are_recorded_with_reasons_and_retried_next_time(service, catalog, hyrax_download, tmp_path):
    path, table = catalog(5)
    table.loc[1, "ra"] = 400.0
    table.loc[3, "dec"] = -91.0
    table.to_parquet(path)
    missing_ra = float(table.ra[4])
    running = service(Faults(no_cutout_ra=frozenset({missing_ra})))
    h = hyrax_download(running, path)
    summary = h.download()
    assert (summary.done, summary.failed) == (4, 6) and not summary.ok
    manifest = read_manifest(tmp_path / "data").set_index(["object_id", "filter"])
    assert manifest.loc[(table.object_id[1], "HSC-G"), "reason"] == "ra = 400.0 is outside [0, 360)"
    assert manifest.loc[(table.object_id[3], "HSC-I"), "reason"] == "dec = -91.0 is outside [-90, 90]"
    assert manifest.loc[(table.object_id[4], "HSC-I"), "reason"] == NO_CUTOUT
    assert manifest.loc[(table.object_id[4], "HSC-I"), "status"] == "failed"
    assert summary.reasons[NO_CUTOUT] == 2 and "Run `hyrax download` again to retry" in str(summary)
    # The service has the data now: the rerun fetches only the failed position, and records it once.
    running.faults.no_cutout_ra = frozenset()
    sent = running.cutouts_sent
    summary = h.download()
    assert (summary.done, summary.failed, summary.skipped) == (2, 4, 4)
    assert running.cutouts_sent == sent + 2
    manifest = read_manifest(tmp_path / "data")
    assert not manifest.duplicated(["object_id", "filter"]).any() and len(manifest) == 10
    assert (manifest.status == "done").sum() == 6


@pytest.mark.parametrize(
    "faults",
    [
        Faults(server_errors=3),
        Faults(truncated_requests=2),
        Faults(corrupt_requests=2),
        Faults(slow_requests=2, delay=1.2),
    ],
    ids=["5xx", "truncated tar", "corrupt FITS", "timeout"],
)
def test_transient_faults_are_retried_to_completion(service, catalog, hyrax_download, tmp_path, faults):
    running = service(faults)
    path, table = catalog(6)
    summary = hyrax_download(running, path, timeout=0.5, retries=4).download()
    assert summary.ok, str(summary)
    check_cutouts(tmp_path / "data", table)


def test_a_service_that_stays_down_is_recorded_and_exits_1(service, catalog, tmp_path, write_config):
    running = service(Faults(server_errors=10_000))
    path, _ = catalog(3)
    config = write_config(
        f"""
        [general]
        data_dir = "{tmp_path / "data"}"
        results_dir = "{tmp_path / "results"}"
        [download]
        service_url = "{running.url}"
        fits_file = "{path}"
        filter = ["HSC-I"]
        username = "alice"
        password = "{PASSWORD}"
        retries = 2
        retry_wait = 0.01
        """
    )
    result = run_hyrax("download", "-c", str(config), timeout=120)
    assert result.returncode == 1, result.stderr
    assert "3 cutouts (3 objects x 1 filters)" in result.stdout and "0 downloaded" in result.stdout
    assert "3 x the service answered HTTP 503 Service Unavailable" in result.stdout
    assert "Run `hyrax download` again to retry" in result.stdout
    manifest = read_manifest(tmp_path / "data")
    assert (manifest.status == "failed").all() and manifest.reason.str.contains("after 2 attempts").all()


def test_catalog_without_tract_uses_the_service_tract(service, catalog, hyrax_download, tmp_path):
    running = service()
    path, table = catalog(3, tract=False)
    hyrax_download(running, path).download()
    assert {line["tract"] for line in running.requests[0].lines} == {"any"}
    manifest = read_manifest(tmp_path / "data")
    expected = tract_of(table.ra[0], table.dec[0])
    first = manifest[manifest.object_id == table.object_id[0]].iloc[0]
    assert first.tract == expected and f"_{expected}_" in first.file


def test_wrong_credentials_stop_with_the_source_and_record_nothing(
    service, catalog, hyrax_download, tmp_path
):
    running = service()
    path, _ = catalog(12)
    h = hyrax_download(running, path, password="not-it", retries=5)
    with pytest.raises(AuthenticationError, match="config keys download.username/download.password"):
        h.download()
    # Only requests already started (2 connections, a worker may take one more before the stop reaches
    # it), never a retry (5 attempts each would be 30 for these 6 requests).
    assert running.unauthorized <= 4
    assert len(read_manifest(tmp_path / "data")) == 0


def test_a_wrong_service_address_stops_with_the_key_to_fix(service, catalog, hyrax_download, tmp_path):
    from hyrax.errors import ConfigError

    running = service()
    path, _ = catalog(12)
    h = hyrax_download(running, path)
    h.set_config("download.service_url", running.url.rstrip("/") + "/pdr9")
    with pytest.raises(ConfigError, match=r"HTTP 404\). Check download.service_url"):
        h.download()
    assert len(read_manifest(tmp_path / "data")) == 0  # nothing recorded as failed: fix and rerun
    assert all(error.startswith("no such page") for error in running.errors)
    running.errors.clear()  # the wrong address was the point


def test_catalog_problems_are_errors_before_any_request(service, catalog, hyrax_download, tmp_path):
    running = service()
    path, table = catalog(3)
    table.rename(columns={"dec": "declination"}).to_parquet(path)
    with pytest.raises(DataError, match=r"no column 'dec'.*It has: object_id, ra, declination, tract"):
        hyrax_download(running, path).download()
    with pytest.raises(DataError, match="missing.parquet' does not exist"):
        hyrax_download(running, tmp_path / "missing.parquet").download()
    assert running.requests == []
    assert not (tmp_path / "results").exists()  # no run directory for a run that could not start


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("concurrent_connections", 11, "from 1 to 10 (the HSC service's limit); got 11"),
        ("concurrent_connections", 0, "from 1 to 10"),
        ("chunk_size", 991, "download.chunk_size must be from 1 to 990"),
        ("sw", "22", "download.sw must be a number with a unit"),
        ("filter", ["HSC_I"], "without '_', '/' or spaces"),
        ("retries", 0, "download.retries must be at least 1"),
        ("num_sources", -2, "at least 0 (or -1 for every object)"),
    ],
)
def test_bad_settings_name_their_key(service, catalog, hyrax_download, key, value, words):
    path, _ = catalog(2)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        hyrax_download(service(), path, **{key: value}).download()


def test_type_is_a_checked_choice(hyrax_config):
    with pytest.raises(ConfigError, match="'download.type'.*must be one of 'coadd', 'coadd/bg'"):
        hyrax_config.set_config("download.type", "warp")


def test_plan_chunks_skip_done_and_set_aside_bad_rows():
    done = np.zeros((7, 2), dtype=bool)
    done[0] = True
    done[3, 1] = True
    chunks = list(plan(done, {5: "ra = 400.0 is outside [0, 360)"}, chunk_size=4))
    refused = [c for c in chunks if c.problems]
    assert [(list(c.rows), list(c.bands)) for c in refused] == [([5, 5], [0, 1])]
    fetched = [
        (int(r), int(b)) for c in chunks if not c.problems for r, b in zip(c.rows, c.bands, strict=True)
    ]
    assert fetched == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (4, 0), (4, 1), (6, 0), (6, 1)]
    assert [len(c.rows) for c in chunks if not c.problems] == [4, 4, 1]


def test_many_rows_plan_lazily_in_blocks():
    done = np.zeros((300_000, 5), dtype=bool)
    chunks = plan(done, {}, chunk_size=990)
    first = next(chunks)
    assert len(first.rows) == 990 and first.rows[0] == 0 and first.rows[-1] == 197
    assert sum(len(c.rows) for c in chunks) + 990 == 1_500_000


def test_hsc_dataset_reads_the_manifest_of_a_download(
    service, catalog, hyrax_download, tmp_path, hyrax_config
):
    from hyrax.datasets.hsc import HSCDataset

    path, table = catalog(4)
    hyrax_download(service(), path).download()
    dataset = HSCDataset(hyrax_config.config, tmp_path / "data")
    assert sorted(dataset.object_ids) == sorted(table.object_id) and dataset.filters == FILTERS
    assert dataset.get_image(0).shape == (2, 32, 32)
    (tmp_path / "data" / "manifest.parquet").unlink()  # the file names alone say the same
    scanned = HSCDataset(hyrax_config.config, tmp_path / "data")
    assert sorted(scanned.object_ids) == sorted(table.object_id) and scanned.filters == FILTERS


def test_config_file_run_is_described_by_its_run_directory(service, catalog, hyrax_config, tmp_path):
    running = service()
    path, _ = catalog(2)
    configure(hyrax_config, running.url, path, tmp_path / "data")
    from hyrax.verbs.download import DownloadVerb

    summary = DownloadVerb(hyrax_config.config).run()
    snapshot = (summary.run_dir / "runtime_config.toml").read_text()
    assert PASSWORD not in snapshot and "********" in snapshot
    assert pd.read_parquet(tmp_path / "data" / "manifest.parquet").status.eq("done").all()


def test_throughput_is_logged_every_interval(service, catalog, hyrax_download):
    import logging

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("hyrax.download")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        path, _ = catalog(8)
        hyrax_download(service(Faults(member_delay=0.02)), path, stats_print_interval=0.1).download()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    reports = [r for r in records if "cutouts/s" in r and "MB/s over the last" in r]
    assert reports and " of 16 cutouts (" in reports[-1] and " done, 0 failed" in reports[-1]
