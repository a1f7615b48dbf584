"""The one image path (hyrax.datasets.images) on real data as users bring it: ZTF alert stamps with NaN,
3.4e38 sentinels and CCD-edge stamps exported as a broker's Parquet; radio cutouts in Jy/beam; Galaxy
Zoo JPEGs; and the check behind hyrax prepare."""

from __future__ import annotations

import collections
import logging
import shutil

import numpy as np
import pytest

from hyrax.datasets.provider import DataProvider
from hyrax.errors import DataError
from tests.conftest import request_config


def ztf_records(real_data) -> dict[str, list[dict]]:
    """The real ZTF alerts of tests/data/ztf_alerts, by schema version (one export per version, as brokers
    write them); the packet whose stamps are not FITS is kept, as a stream meets it."""
    import fastavro

    by_version = collections.defaultdict(list)
    for path in sorted((real_data / "ztf_alerts").glob("*.avro")):
        with open(path, "rb") as handle:
            for record in fastavro.reader(handle):
                by_version[str(record.get("schemavsn"))].append(record)
    return by_version


@pytest.fixture
def ztf_export(real_data, tmp_path):
    """A folder of a broker's Parquet exports of the real alerts: one file per schema version (files of
    the same version that pyarrow cannot join in one table are written one alert a file), and one export
    made without template stamps, as some brokers ship them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ztf_export"
    folder.mkdir()
    for version, records in ztf_records(real_data).items():
        try:
            pq.write_table(pa.Table.from_pylist(records), folder / f"ztf_v{version}.parquet")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            for number, record in enumerate(records):
                pq.write_table(pa.Table.from_pylist([record]), folder / f"ztf_v{version}_{number}.parquet")
    return folder


def test_real_ztf_alert_export_trains_as_it_comes(ztf_export, hyrax_config, caplog, monkeypatch):
    """Finding 4: NaN pixels, 3.4e38 sentinels and stamps cut at a CCD edge (63 x 41, 45, 53) all become
    finite (3, 63, 63) images with the defaults; the unreadable alert is named by its candid and object."""
    from hyrax.datasets import images as image_path
    from hyrax.datasets.alert_archive import AlertParquetDataset

    monkeypatch.setattr(image_path, "_said", set())  # what is said once per process, said in this test

    caplog.set_level(logging.INFO)
    dataset = AlertParquetDataset(hyrax_config.config, ztf_export)
    assert dataset.image_pipeline.crop_to == (63, 63)
    images, unreadable = {}, []
    for row in range(len(dataset)):
        try:
            images[dataset.get_alert_id(row)] = dataset.get_image(row)
        except DataError as error:
            unreadable.append(str(error))
    assert len(images) == 16 and all(image.shape == (3, 63, 63) for image in images.values())
    assert all(np.isfinite(image).all() and np.abs(image).max() < 50 for image in images.values())
    edge = images[396522680015040001]  # its stamps are 41 rows of 63, with 480 NaN pixels
    assert (edge[:, :11] == 0).all() and (edge[:, 52:] == 0).all() and edge[:, 11:52].std() > 0.1
    assert np.abs(images[472263571115090000]).max() < 50  # 2783 pixels at 3.4e38 are background
    assert len(unreadable) == 1 and unreadable[0].startswith("Alert -87704463155000 (row ")
    assert "padded about its centre" in caplog.text and 'normalize = "auto"' in caplog.text


def test_crop_to_works_for_alert_stamps_as_the_collate_error_says(ztf_export, hyrax_config):
    """The collate error advises data_set.crop_to; the alert datasets now apply it like every other."""
    from hyrax.datasets.alert_archive import AlertParquetDataset

    hyrax_config.set_config("data_set.crop_to", [32, 32])
    hyrax_config.set_config("data_set.on_bad_object", "skip")
    config = request_config(
        hyrax_config, data={"dataset_class": "AlertParquetDataset", "data_location": str(ztf_export)}
    )
    provider = DataProvider(config, "train")
    batch = provider.collate([provider[i] for i in range(len(provider))])
    assert batch["data"]["image"].shape == (16, 3, 32, 32)
    assert isinstance(provider.datasets["data"], AlertParquetDataset)


def test_an_export_without_template_stamps_is_read_with_the_stamps_every_file_has(
    ztf_export, hyrax_config, caplog
):
    import pyarrow.parquet as pq

    from hyrax.datasets.alert_archive import AlertParquetDataset

    table = pq.read_table(ztf_export / "ztf_v3.5.parquet")
    pq.write_table(table.drop_columns(["cutoutTemplate"]), ztf_export / "ztf_v3.5_no_template.parquet")
    dataset = AlertParquetDataset(hyrax_config.config, ztf_export)
    assert "ztf_v3.5_no_template.parquet lacks template stamps" in caplog.text
    assert dataset.stamps.kinds == ("science", "difference")
    shapes = set()
    for row in range(len(dataset)):
        try:
            shapes.add(dataset.get_image(row).shape)
        except DataError as error:
            assert "Alert -87704463155000" in str(error)
    assert shapes == {(2, 63, 63)}


def test_radio_cutouts_in_jy_per_beam_are_normalised_and_their_blank_pixels_mended(real_data, hyrax_config):
    """Finding 8: Jy/beam values (~1e-3 to 10) reach the model at unit scale; the 16 cutouts at the survey's
    edge (NaN pixels) are read with the defaults."""
    folder = real_data / "radio_parkes_1904"
    config = request_config(
        hyrax_config, data={"dataset_class": "FitsImageDataset", "data_location": str(folder)}
    )
    provider = DataProvider(config, "train")
    images = np.stack([provider[i]["data"]["image"] for i in range(len(provider))])
    assert images.shape == (56, 1, 16, 16) and np.isfinite(images).all()
    spread = images.reshape(56, -1).std(axis=1)
    assert 0.3 < np.median(spread) < 5  # the raw cutouts' spread is ~0.05-3 Jy/beam, object to object
    hyrax_config.set_config("data_set.normalize", "none")
    raw = DataProvider(request_config(hyrax_config), "train")[0]["data"]["image"]
    assert raw.max() == pytest.approx(13.4599, abs=1e-3)  # the brightest source's peak, in Jy/beam


def test_image_folder_reads_galaxy_zoo_jpegs_with_their_catalog(real_data, hyrax_config, tmp_path):
    from hyrax.datasets import ImageFolderDataset

    folder = real_data / "gz_decals_rings" / "jpeg"
    with pytest.raises(DataError, match=r"has no column 'object_id'.*iauname.*object_id_column_name"):
        ImageFolderDataset(hyrax_config.config, folder)
    hyrax_config.set_config("data_set.object_id_column_name", "iauname")
    dataset = ImageFolderDataset(hyrax_config.config, folder)
    image = dataset.get_image(0)
    assert len(dataset) == 16 and image.shape == (3, 424, 424) and image.min() >= 0 and image.max() <= 1
    assert dataset.get_object_id(0) == "J000411.19+020924.0" and dataset.getter("ring")(0) == 1
    hyrax_config.set_config("data_set.ImageFolderDataset.resize_to", [64, 64])
    small = ImageFolderDataset(hyrax_config.config, folder).get_image(0)
    assert small.shape == (3, 64, 64) and abs(small.mean() - image.mean()) < 0.02
    # without a catalog: every image file, ids from the file names; an error page saved as a JPEG is named
    loose = tmp_path / "loose"
    shutil.copytree(folder / "images", loose)
    (loose / "odd.jpg").write_text("<!DOCTYPE html><html><body>503 Service Unavailable</body></html>")
    dataset = ImageFolderDataset(hyrax_config.config, loose)
    assert len(dataset) == 17 and "J000411.19+020924.0" in list(dataset.object_ids)
    with pytest.raises(DataError, match=r"Object odd: .*odd.jpg' is an HTML page.*on_bad_object"):
        dataset.get_image(list(dataset.object_ids).index("odd"))


def test_a_jpeg_given_to_the_fits_dataset_is_named_as_a_jpeg(real_data, hyrax_config):
    """Finding 6: JPEG cutouts given to FitsImageDataset were 'corrupt or truncated: download it again'."""
    from hyrax.datasets import FitsImageDataset

    hyrax_config.set_config("data_set.object_id_column_name", "iauname")
    dataset = FitsImageDataset(hyrax_config.config, real_data / "gz_decals_rings" / "jpeg")
    with pytest.raises(DataError) as error:
        dataset.get_image(0)
    assert "is a JPEG image, not a FITS file" in str(error.value) and "ImageFolderDataset" in str(error.value)
    assert "download it again" not in str(error.value)


def test_fits_image_dataset_is_documented_and_importable():
    """Finding 6: `hyrax config data_set.FitsImageDataset` had no such section; the import failed."""
    from hyrax.config import ConfigManager
    from hyrax.datasets import FitsImageDataset, ImageFolderDataset  # noqa: F401
    from tests.conftest import run_hyrax

    assert "FitsImageDataset" in ConfigManager().config["data_set"]
    shown = run_hyrax("config", "data_set.FitsImageDataset")
    assert shown.returncode == 0 and "object_id" in shown.stdout and "filename" in shown.stdout
    assert "arcsinh" in shown.stdout


def test_prepare_says_everything_that_is_wrong_at_once(ztf_export, hyrax_config, capsys):
    """Build 3: one check names every problem with its fix: NaN pixels that would stop training, stamps of
    several sizes, raw values that are not normalised, the unreadable alert by id; nothing stops it."""
    from hyrax.verbs.prepare import PrepareVerb

    hyrax_config.set_config("data_set.nan_mode", False)
    hyrax_config.set_config("data_set.normalize", "none")
    hyrax_config.set_config("data_set.crop_to", False)
    request_config(
        hyrax_config, data={"dataset_class": "AlertParquetDataset", "data_location": str(ztf_export)}
    )
    providers = PrepareVerb(hyrax_config.config).run()
    report = providers["train"].check_report
    text = capsys.readouterr().out
    assert report.read == 17 and len(report.unreadable) == 1
    problems = "\n".join(report.problems)
    assert 'set data_set.nan_mode = "zero"' in problems and "e.g. " in problems
    assert "not normalised" in problems and 'data_set.normalize = "arcsinh"' in problems
    assert 'on_bad_object = "skip"' in problems and "87704463155000" in problems
    assert "sentinel pixels" in text and "Problems, each with the setting that fixes it" in text
    assert "occur more than once" not in problems  # an alert archive's id is the alert's (candid)
    request_config(hyrax_config, data={"primary_id_field": "object_id"})
    report = PrepareVerb(hyrax_config.config).run()["train"].check_report
    assert "1 id(s) occur more than once in object_id (e.g. ZTF17aaajnnn)" in report.problems[0]


def test_prepare_on_the_command_line_exits_non_zero_on_problems(real_data, write_config):
    from tests.conftest import run_hyrax

    folder = real_data / "radio_parkes_1904"
    fine = write_config(
        f"""
        [data_request.train.data]
        dataset_class = "FitsImageDataset"
        data_location = "{folder}"
        """
    )
    result = run_hyrax("prepare", "-c", fine)
    assert result.returncode == 0 and "No problems found" in result.stdout, result.stderr
    assert "16 object(s) have NaN/inf pixels" in result.stdout
    strict = write_config(
        fine.read_text() + '\n[data_set]\nnan_mode = false\nnormalize = "none"\n', "strict.toml"
    )
    result = run_hyrax("prepare", "-c", strict, "--check", "all")
    assert result.returncode == 1 and 'set data_set.nan_mode = "zero"' in result.stdout
