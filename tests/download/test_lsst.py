"""Rubin cutouts (issue 16): ``hyrax download`` with ``download.service = "lsst"``, ``LSSTDataset`` and
``DownloadedLSSTDataset`` against a local SODA service that cuts real HSC scenes (soda_server.py), with
its faults: 401, 404, 5xx, time-outs, answers cut short or corrupt, redirects, positions off the image."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest

from hyrax.download import manifest
from hyrax.download.client import AuthenticationError
from hyrax.download.manifest import read_manifest
from hyrax.download.soda import SodaLine, SodaOptions, soda_query
from hyrax.errors import ConfigError, DataError
from tests.download.local_service import started
from tests.download.soda_server import TOKEN, SodaFaults, SodaService, dataset_id, read_scenes, scene_centres
from tests.fault_table import record_landing

BANDS = ["g", "r", "i"]


@pytest.fixture
def soda():
    """soda(faults=SodaFaults(...), redirect=False) -> a running SodaService; protocol errors fail the test."""
    yield from started(lambda faults=None, **options: SodaService(faults=faults or SodaFaults(), **options))


def lsst_catalog(path, per_side: int = 3) -> pd.DataFrame:
    """Objects on a grid inside both scenes; image_id_<band> holds each band's SODA ID."""
    rows = []
    for number, (scene, ra, dec) in enumerate(scene_centres(read_scenes(), per_side)):
        row = {"object_id": str(2144000 + number), "ra": ra, "dec": dec, "scene": scene}
        row.update({f"image_id_{band}": dataset_id(scene, band) for band in BANDS})
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_parquet(path)
    return table


@pytest.fixture
def lsst_download(tmp_path, monkeypatch):
    """lsst_download(service, **download_keys) -> (Hyrax set up to download into tmp/data, catalog)."""
    from hyrax import Hyrax

    for variable in ("RSP_TOKEN", "ACCESS_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    token_file = tmp_path / "rsp-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)

    def make(running: SodaService, per_side: int = 3, **settings):
        table = lsst_catalog(tmp_path / "catalog.parquet", per_side)
        h = Hyrax(setup_logging=False)
        h.set_config("general.data_dir", str(tmp_path / "data"))
        h.set_config("general.results_dir", str(tmp_path / "results"))
        values = {
            "service": "lsst",
            "fits_file": str(tmp_path / "catalog.parquet"),
            "filter": BANDS,
            "sw": "2.5asec",
            "sh": "2.5asec",
            "retry_wait": 0.01,
            "timeout": 5,
            "concurrent_connections": 2,
            "lsst.service_url": running.url,
            "lsst.token_file": str(token_file),
            **settings,
        }
        for key, value in values.items():
            h.set_config(f"download.{key}", value)
        return h, table

    return make


def expected_pixels(service: SodaService, row, band: str, h) -> np.ndarray:
    """What the service cuts for this object and band, with the POS the download sends."""
    settings = h.config["download"]
    from hyrax.download.settings import degrees

    options = SodaOptions("{x}", settings["lsst"]["shape"], degrees(settings["sw"]), degrees(settings["sh"]))
    query = parse_qs(soda_query(SodaLine(band, row.ra, row.dec, "x"), options))
    return service.expected(row.scene, band, query["POS"][0])


def check_download(service, h, table, data_dir) -> pd.DataFrame:
    """Every object x band done once, each file a multi-extension FITS holding that object's pixels."""
    from astropy.io import fits
    from astropy.wcs import WCS

    manifest = read_manifest(data_dir)
    assert not manifest.duplicated(["object_id", "filter"]).any()
    done = manifest[manifest.status == "done"]
    assert len(done) == len(table) * len(BANDS), manifest[manifest.status != "done"].reason.tolist()
    by_id = table.set_index("object_id")
    for row in done.itertuples():
        source = by_id.loc[row.object_id]
        with fits.open(data_dir / row.file) as hdus:
            assert [hdu.name for hdu in hdus] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
            pixels, wcs = hdus["IMAGE"].data, WCS(hdus["IMAGE"].header)
        assert np.array_equal(pixels, expected_pixels(service, source, row.filter, h)), row.file
        centre = wcs.pixel_to_world((pixels.shape[1] - 1) / 2, (pixels.shape[0] - 1) / 2)
        assert abs(centre.ra.deg - source.ra) < 0.2 / 3600 and abs(centre.dec.deg - source.dec) < 0.2 / 3600
        assert (row.height, row.width) == pixels.shape
        assert row.file == f"{row.object_id}_soda_{source.ra:.5f}_{source.dec:.5f}_{row.filter}.fits"
    return manifest


def test_download_fetches_every_cutout_once_with_the_token_and_the_dataset_reads_them(
    soda, lsst_download, tmp_path, caplog
):
    from hyrax.datasets.lsst import DownloadedLSSTDataset
    from hyrax.testing import check_dataset

    running = soda()
    h, table = lsst_download(running)
    with caplog.at_level(logging.DEBUG):
        summary = h.download()
    assert (summary.requested, summary.done, summary.failed) == (54, 54, 0) and summary.ok
    check_download(running, h, table, tmp_path / "data")
    assert len(running.queries) == 54
    assert all(q["POS"][0].startswith("CIRCLE ") for q in running.queries)
    # the token is sent, and written nowhere: not in the log, the run directory or the data directory
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for headers in running.headers)
    assert TOKEN not in caplog.text
    for path in [*summary.run_dir.rglob("*"), *(tmp_path / "data").rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path

    again = h.download()  # resumable: nothing left to fetch
    assert (again.done, again.skipped) == (0, 54) and len(running.queries) == 54

    h.set_config("data_set.filters", ["g", "i"])
    h.set_config("data_set.normalize", "none")  # the pixels as served, to compare
    dataset = DownloadedLSSTDataset(h.config, tmp_path / "data")
    assert len(dataset) == len(table)
    image = dataset.get_image(4)
    assert image.shape == (2, 15, 15) and image.dtype == np.float32
    row = table.set_index("object_id").loc[dataset.get_object_id(4)]
    assert np.array_equal(image[1], expected_pixels(running, row, "i", h))
    assert np.allclose(dataset.column("ra"), table.set_index("object_id").loc[dataset.column("object_id")].ra)
    check_dataset(dataset)


def test_box_cutouts_are_asked_as_a_soda_range(soda, lsst_download, tmp_path):
    running = soda()
    h, table = lsst_download(running, per_side=2, **{"lsst.shape": "box", "sw": "3asec", "sh": "2asec"})
    assert h.download().ok
    assert all(q["POS"][0].startswith("RANGE ") for q in running.queries)
    manifest = check_download(running, h, table, tmp_path / "data")
    assert set(zip(manifest.height, manifest.width, strict=True)) <= {(12, 18), (12, 19), (13, 18), (13, 19)}


@pytest.mark.parametrize(
    "faults",
    [
        SodaFaults(server_errors=2),
        SodaFaults(truncated_requests=2),
        SodaFaults(corrupt_requests=2),
        SodaFaults(slow_requests=1, delay=1.5),
    ],
    ids=["503", "cut-short", "corrupt-fits", "time-out"],
)
def test_transient_faults_are_retried_until_every_cutout_is_whole(soda, lsst_download, tmp_path, faults):
    running = soda(faults)
    # a short time-out only where the fault is a slow answer: on a loaded machine a healthy answer can take
    # longer than 0.5 s, and counted with the injected faults it used up the retries (a 503 case failed so)
    timeout = 0.5 if faults.slow_requests else 10.0
    h, table = lsst_download(running, per_side=2, timeout=timeout)
    summary = h.download()
    assert summary.ok and summary.done == len(table) * len(BANDS)
    check_download(running, h, table, tmp_path / "data")
    assert not list((tmp_path / "data" / ".partial").glob("*"))


def test_a_service_that_keeps_failing_is_recorded_then_the_next_run_completes(soda, lsst_download, tmp_path):
    running = soda(SodaFaults(server_errors=10**6))
    h, table = lsst_download(running, per_side=1, retries=2)
    summary = h.download()
    assert not summary.ok and summary.failed == len(table) * len(BANDS)
    manifest = read_manifest(tmp_path / "data")
    assert set(manifest.reason) == {
        "the service answered HTTP 503 Service Unavailable: ServiceUnavailable: try again later (after 2 attempts)"
    }
    running.faults.server_errors = 0
    assert h.download().ok
    check_download(running, h, table, tmp_path / "data")


def test_unknown_images_and_positions_off_the_image_fail_those_cutouts_only(soda, lsst_download, tmp_path):
    running = soda()
    h, table = lsst_download(running, per_side=2)
    table.loc[0, "image_id_r"] = "ivo://hyrax.test/cosmos?scene=Nowhere&band=r"
    table.loc[1, "image_id_g"] = None  # no image ID in the catalog
    table.loc[2, ["ra", "dec"]] = [table.ra[2] + 0.1, table.dec[2]]  # off its scene
    table.to_parquet(tmp_path / "catalog.parquet")
    summary = h.download()
    assert summary.failed == 5 and summary.done == len(table) * 3 - 5
    failed = read_manifest(tmp_path / "data").query("status == 'failed'").set_index(["object_id", "filter"])
    ids = table.object_id
    assert (
        "has no image ivo://hyrax.test/cosmos?scene=Nowhere&band=r (NotFoundFault"
        in failed.reason[(ids[0], "r")]
    )
    assert "the catalog has no image ID for band g" in failed.reason[(ids[1], "g")]
    assert "UsageFault" in failed.reason[(ids[2], "i")] and "does not overlap" in failed.reason[(ids[2], "i")]
    # refused cutouts are not retried: one request each
    assert len(running.queries) == len(table) * 3 - 1


def test_redirects_are_followed_without_handing_the_token_on(soda, lsst_download, tmp_path):
    running = soda(redirect=True)
    h, table = lsst_download(running, per_side=1)
    assert h.download().ok
    check_download(running, h, table, tmp_path / "data")
    assert len(running.result_headers) == len(table) * len(BANDS)
    assert all(headers["Host"].startswith("localhost:") for headers in running.result_headers)
    assert not any("Authorization" in headers for headers in running.result_headers)


def test_a_refused_token_or_a_wrong_address_stops_the_download_with_what_to_fix(
    soda, lsst_download, tmp_path
):
    running = soda(token="another-token")
    h, _ = lsst_download(running, per_side=1)
    with pytest.raises(AuthenticationError) as refused:
        h.download()
    message = str(refused.value)
    assert "HTTP 401" in message and "rsp-token" in message and TOKEN not in message
    assert not list((tmp_path / "data").glob("*.fits"))

    running = soda()
    h, _ = lsst_download(running, per_side=1, **{"lsst.service_url": running.url.replace("/sync", "/synch")})
    with pytest.raises(ConfigError, match="no SODA cutout service at .*download.lsst.service_url"):
        h.download()


def test_settings_and_token_errors_name_the_key(soda, lsst_download, tmp_path, monkeypatch):
    running = soda()
    h, _ = lsst_download(running, per_side=1)
    h.set_config("download.filter", ["HSC-G"])
    with pytest.raises(ConfigError, match="not Rubin bands"):
        h.download()
    h.set_config("download.filter", BANDS)
    h.set_config("download.lsst.dataset_id", "ivo://fixed")
    with pytest.raises(ConfigError, match="names no catalog column"):
        h.download()
    h.set_config("download.lsst.dataset_id", "{image_{band}}")
    with pytest.raises(
        DataError, match="no columns 'image_g', 'image_r', 'image_i', which download.lsst.dataset_id reads"
    ):
        h.download()
    h.set_config("download.lsst.dataset_id", "{image_id_{band}}")
    h.set_config("download.lsst.token_file", False)
    with pytest.raises(ConfigError, match="No Rubin Science Platform token found.*RSP_TOKEN"):
        h.download()
    monkeypatch.setenv("ACCESS_TOKEN", TOKEN)  # as inside the RSP
    assert h.download().ok
    toml_token = tmp_path / "token.toml"
    toml_token.write_text(f'token = "{TOKEN}"\n')
    h.set_config("download.lsst.token_file", str(toml_token))
    assert h.download().ok


def test_lsst_dataset_cuts_as_objects_are_read(soda, lsst_download, tmp_path, monkeypatch):
    from hyrax.datasets.lsst import LSSTDataset
    from hyrax.testing import check_dataset

    running = soda()
    h, table = lsst_download(running, per_side=2)
    h.set_config("data_set.filters", ["r", "i"])
    h.set_config("data_set.semi_width_deg", 1.25 / 3600)
    h.set_config("data_set.semi_height_deg", 1.25 / 3600)
    h.set_config("data_set.normalize", "none")  # the pixels as served, to compare
    dataset = LSSTDataset(h.config, tmp_path / "catalog.parquet")
    assert len(dataset) == len(table) and {"image", "object_id", "ra", "dec", "scene"} <= set(
        dataset.fields()
    )
    image = dataset.get_image(3)
    row = table.iloc[3]
    assert image.shape == (2, 15, 15)
    assert np.array_equal(image[0], expected_pixels(running, row, "r", h))
    check_dataset(dataset)

    table.loc[5, "image_id_i"] = "ivo://hyrax.test/cosmos?scene=Nowhere&band=i"
    table.to_parquet(tmp_path / "broken.parquet")
    broken = LSSTDataset(h.config, tmp_path / "broken.parquet")
    with pytest.raises(DataError, match=f"object {table.object_id[5]}, band i: no cutout .*NotFoundFault"):
        broken.get_image(5)

    h.set_config("data_set.butler_repo", "dp1")
    with pytest.raises(ConfigError, match="lsst.daf.butler cannot be imported"):
        LSSTDataset(h.config, tmp_path / "catalog.parquet")


def test_downloaded_and_cut_as_read_rubin_cutouts_join_by_id_in_a_data_request(
    soda, lsst_download, tmp_path, capsys
):
    """A data_request with the download as primary and LSSTDataset (cutting the same objects from the
    service as they are read) joined by object id: the same pixels, whatever the order of the catalog."""
    running = soda()
    h, table = lsst_download(running, per_side=2)
    assert h.download().ok
    shuffled = table.sample(frac=1, random_state=1)
    shuffled.to_parquet(tmp_path / "shuffled.parquet")
    h.set_config("data_set.filters", BANDS)
    h.set_config("data_set.semi_width_deg", 1.25 / 3600)
    h.set_config("data_set.semi_height_deg", 1.25 / 3600)
    h.set_config(
        "data_request.train.downloaded",
        {
            "dataset_class": "DownloadedLSSTDataset",
            "data_location": str(tmp_path / "data"),
            "primary_id_field": "object_id",
        },
    )
    h.set_config(
        "data_request.train.live",
        {
            "dataset_class": "LSSTDataset",
            "data_location": str(tmp_path / "shuffled.parquet"),
            "join_field": "object_id",
            "fields": ["image", "scene"],
        },
    )
    provider = h.prepare()["train"]
    assert "image" in capsys.readouterr().out  # prepare prints each field with its shape
    batch = provider.collate([provider[i] for i in range(len(provider))])
    assert batch["downloaded"]["image"].shape == (len(table), 3, 15, 15)
    np.testing.assert_array_equal(batch["downloaded"]["image"], batch["live"]["image"])
    scenes = table.set_index("object_id").loc[batch["object_id"], "scene"].to_numpy()
    assert list(batch["live"]["scene"]) == list(scenes)


@pytest.mark.slow  # the shared machinery's kill tests are in test_interrupt.py (HSC)
def test_kill_9_mid_rubin_download_then_the_cli_resumes_it(
    soda, lsst_download, tmp_path, write_config, monkeypatch
):
    """A real `hyrax download` killed twice while cutouts arrive, then run to the end: each object x band
    exactly once, every file whole; the token came from the environment and is in no file."""
    from tests.download.test_interrupt import kill_after, start_download

    running = soda(SodaFaults(latency=0.01))
    h, table = lsst_download(running, per_side=3)
    config_file = write_config(
        f"""
        [general]
        data_dir = "{tmp_path / "data"}"
        results_dir = "{tmp_path / "results"}"
        [download]
        service = "lsst"
        fits_file = "{tmp_path / "catalog.parquet"}"
        filter = {BANDS}
        sw = "2.5asec"
        sh = "2.5asec"
        concurrent_connections = 3
        retry_wait = 0.01
        [download.lsst]
        service_url = "{running.url}"
        """
    )
    monkeypatch.setenv("RSP_TOKEN", TOKEN)  # the subprocesses inherit it
    data, landings = tmp_path / "data", []
    for threshold in (5, 15, 25):
        kill_after(start_download(config_file, tmp_path), data, threshold)
        with manifest.locked(data):  # what the kill left, as the next run will read it
            manifest.consolidate(data)
        done = int((read_manifest(data).status == "done").sum())
        landings.append({"files_at_kill": threshold, "done_rows": done, "of": len(table) * len(BANDS)})
    finished = start_download(config_file, tmp_path)
    assert finished.wait(timeout=120) == 0, finished.stderr.read().decode()[-2000:]
    finished.stderr.close()
    check_download(running, h, table, tmp_path / "data")
    assert len(running.queries) < 2 * len(table) * len(BANDS)  # resumed, not started over
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "rsp-token":
            assert TOKEN.encode() not in path.read_bytes(), path
    for landed in landings:
        point = "kill -9 once N cutouts on disk (3 kills, then a run)"
        record_landing(
            "download (lsst)", point, landed, "every cutout once, each file whole; token in no file"
        )
