"""hyrax.testing.check_dataset: passes every built-in dataset, and explains what is wrong with others."""

from __future__ import annotations

import numpy as np
import pytest

from hyrax.datasets import HyraxDataset
from hyrax.plugins import DATASETS
from hyrax.testing import ConformanceError, check_dataset
from tests.conftest import REAL_DATA


@pytest.fixture
def builtin_locations(tmp_path, cutouts, hyrax_config, real_data):
    import pickle
    import shutil

    import pandas as pd

    base, rows = cutouts(n=3)
    rows.to_csv(base / "catalog.csv", index=False)
    hsc, _ = cutouts(n=3, filters=("HSC-G", "HSC-R"), hsc_names=True, directory="hsc")
    csv_path = tmp_path / "table.csv"
    pd.DataFrame({"object_id": ["a", "b"], "mag": [1.0, 2.0]}).to_csv(csv_path, index=False)
    cifar = tmp_path / "cifar"
    (cifar / "cifar-10-batches-py").mkdir(parents=True)
    for name in [f"data_batch_{n}" for n in range(1, 6)]:
        batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
        (cifar / "cifar-10-batches-py" / name).write_bytes(pickle.dumps(batch))
    from hyrax.results.store import ResultWriter

    results = tmp_path / "infer_run"
    with ResultWriter(results, (4,), "float32") as writer:
        writer.write(np.array(["a", "b", "c"]), np.zeros((3, 4), np.float32))
    parquet = tmp_path / "catalog.parquet"
    pd.DataFrame(
        {"object_id": ["x", "y", "z"], "ra": [1.0, 2.0, 3.0], "flux": [[1, 2], [3, 4], [5, 6]]}
    ).to_parquet(parquet)
    import lance
    import pyarrow as pa

    lancedb = tmp_path / "lancedb"
    lance.write_dataset(
        pa.table({"object_id": ["p", "q"], "mag": [20.0, 21.0]}), str(lancedb / "stars.lance")
    )
    import lsdb
    import nested_pandas as npd

    objects = pd.DataFrame(
        {"object_id": ["s1", "s2", "s3"], "ra": [10.0, 20.0, 30.0], "dec": [1.0, 2.0, 3.0]}
    )
    curves = pd.DataFrame({"mjd": [1.0, 2.0, 3.0, 4.0], "mag": [15.0, 15.5, 16.0, 17.0]}, index=[0, 0, 1, 2])
    nested = npd.NestedFrame(objects).join_nested(curves, "lc")
    nested.to_parquet(tmp_path / "nested.parquet")
    lsdb.from_dataframe(nested, catalog_name="tiny", ra_column="ra", dec_column="dec").write_catalog(
        tmp_path / "hats"
    )
    import datasets

    (tmp_path / "mmu" / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(
        {"object_id": ["m1", "m2"], "spectrum": [{"flux": [1.0, 2.0]}, {"flux": [3.0, 4.0]}]}
    ).to_parquet(str(tmp_path / "mmu" / "data" / "train-00000-of-00001.parquet"))
    from astropy.io import fits

    rubin = tmp_path / "rubin"  # as hyrax download names Rubin cutouts (no manifest: the files are scanned)
    rubin.mkdir()
    for number in range(3):
        for band in ("g", "r"):
            image = np.full((8, 8), number, np.float32)
            hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, name="IMAGE")])
            hdus.writeto(rubin / f"{9000 + number}_soda_150.{number:05d}_2.00000_{band}.fits")
    ranged = tmp_path / "range_read"  # Rubin-like coadds read as byte ranges (local paths here)
    ranged.mkdir()
    wcs = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0, "CRPIX1": 20.5}
    wcs.update({"CRPIX2": 20.5, "CDELT1": -0.001, "CDELT2": 0.001})
    image = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, fits.Header(wcs), name="IMAGE")]).writeto(
        ranged / "coadd.fits"
    )
    pd.DataFrame(
        {"object_id": ["r1", "r2", "r3"], "ra": [150.0, 150.003, 149.997], "dec": [2.0, 2.002, 1.998]}
        | {f"url_{band}": [str(ranged / "coadd.fits")] * 3 for band in "ugrizy"}
    ).to_parquet(ranged / "objects.parquet")
    import pyarrow.parquet as pq

    from tests.stream.test_alert_decoding import _ztf_records

    jpegs = tmp_path / "jpegs"  # a folder of real Galaxy Zoo JPEGs without a catalog: ids from file names
    jpegs.mkdir()
    for path in sorted((real_data / "gz_decals_rings" / "jpeg" / "images").glob("*.jpg"))[:3]:
        shutil.copy(path, jpegs)

    pq.write_table(pa.Table.from_pylist(_ztf_records(range(3))), tmp_path / "alerts.parquet")
    return {
        "AlertParquetDataset": tmp_path / "alerts.parquet",
        "DownloadedLSSTDataset": rubin,
        "RangeReadLSSTDataset": ranged / "objects.parquet",
        "MultimodalUniverseDataset": tmp_path / "mmu",
        "NestedPandasDataset": tmp_path / "nested.parquet",
        "LightCurveDataset": REAL_DATA / "s82_rrlyrae" / "per_object",
        "HyraxHATSDataset": tmp_path / "hats",
        "LanceDBDataset": lancedb,
        "ParquetDataset": parquet,
        "ResultDataset": results,
        "HyraxRandomDataset": None,
        "DecalsRingsDataset": None,
        "FitsImageDataset": base,
        "ImageFolderDataset": jpegs,
        "HSCDataset": hsc,
        "HyraxCSVDataset": csv_path,
        "HyraxCifarDataset": cifar,
    }


def test_every_builtin_dataset_conforms(builtin_locations):
    from hyrax.datasets import BUILTIN_DATASETS

    # LSSTDataset needs a cutout service (tests/download/test_lsst.py checks it against a local one) and
    # KafkaStreamDataset a broker (the next test); LSDBStreamDataset is a stream, not indexed by position
    # (tests/datasets/test_lsdb_stream.py checks it).
    streams = {"LSSTDataset", "KafkaStreamDataset", "LSDBStreamDataset"}
    assert set(builtin_locations) | streams == set(BUILTIN_DATASETS)
    for name, location in builtin_locations.items():
        report = check_dataset(DATASETS.get(name), data_location=location)
        assert any("unique" in line for line in report), name


def test_every_builtin_dataset_is_read_by_dataloader_workers(builtin_locations, hyrax_config):
    """Issue 26: every built-in map-style dataset gives its every object through the DataLoader with the
    default num_workers (tables are read in the main process: Lance is not fork-safe)."""
    from hyrax.datasets.loader import loader_from_config
    from hyrax.datasets.provider import DataProvider

    hyrax_config.set_config("data_loader.num_workers", 2)  # the default ("auto") reads these in-process
    hyrax_config.set_config("data_loader.batch_size", 2)
    for name, location in builtin_locations.items():
        entry = {"dataset_class": name, **({"data_location": str(location)} if location else {})}
        hyrax_config.set_config("data_request", {"train": {"data": entry}})
        provider = DataProvider(hyrax_config.config, "train")
        ids = [i for batch in loader_from_config(hyrax_config.config, provider) for i in batch["object_id"]]
        assert sorted(map(str, ids)) == sorted(str(provider.ids_at([i])[0]) for i in range(len(provider))), (
            name
        )


def test_the_stream_dataset_conforms_on_a_real_broker(hyrax_config):
    from hyrax.datasets.kafka import KafkaStreamDataset
    from tests.stream.alerts import rubin_packet
    from tests.stream.broker import Broker

    with Broker() as broker:
        broker.create_topic("alerts", 1)
        broker.produce("alerts", [b"garbage", rubin_packet(0), rubin_packet(1), rubin_packet(2)])
        hyrax_config.set_config("data_set.KafkaStreamDataset.consumer_options", {"session.timeout.ms": 6000})
        report = check_dataset(KafkaStreamDataset, hyrax_config.config, f"kafka://{broker.bootstrap}/alerts")
    assert any("a stream: 3 samples with fields alert_id" in line for line in report), report


def test_failures_are_explained_all_at_once():
    class Sloppy(HyraxDataset):
        def __len__(self):
            return 3

        def get_object_id(self, idx):
            return "same"

        def get_image(self, idx):
            import torch

            return torch.zeros(2)

        def get_noise(self, idx):
            return np.random.default_rng().random(3)

        def get_nothing(self, idx):
            return None

    with pytest.raises(ConformanceError) as error:
        check_dataset(Sloppy)
    message = str(error.value)
    assert "get_image(0) returns a torch tensor; return numpy instead" in message
    assert "get_noise(0) returned different values on two calls" in message
    assert "get_nothing(0) returns None" in message
    assert "object ids repeat (same" in message
    DATASETS.unregister("Sloppy")


def test_missing_len_and_ids():
    class NoLen(HyraxDataset):
        pass

    with pytest.raises(ConformanceError, match=r"NoLen has no __len__"):
        check_dataset(NoLen)

    class NoIds(HyraxDataset):
        def __len__(self):
            return 1

        def get_flux(self, idx):
            return 1.0

    with pytest.raises(ConformanceError, match=r"no get_object_id\(idx\)"):
        check_dataset(NoIds)
    DATASETS.unregister("NoLen")
    DATASETS.unregister("NoIds")


def test_constructor_errors_say_the_signature():
    class Needy(HyraxDataset):
        def __init__(self, config, data_location, extra):
            super().__init__(config, data_location)

    with pytest.raises(ConformanceError, match=r"takes \(config, data_location=None\)"):
        check_dataset(Needy)
    DATASETS.unregister("Needy")
