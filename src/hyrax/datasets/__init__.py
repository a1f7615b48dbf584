"""Datasets: the ``HyraxDataset`` contract, the data provider, splits and the built-in datasets.

Built-ins are registered lazily by name, so listing them imports nothing heavy.
"""

from __future__ import annotations

from hyrax.datasets.dataset import HyraxDataset
from hyrax.plugins import DATASETS

BUILTIN_DATASETS = {
    "HyraxRandomDataset": "hyrax.datasets.random:HyraxRandomDataset",
    "HyraxCSVDataset": "hyrax.datasets.csv:HyraxCSVDataset",
    "FitsImageDataset": "hyrax.datasets.fits:FitsImageDataset",
    "ImageFolderDataset": "hyrax.datasets.image_folder:ImageFolderDataset",
    "HSCDataset": "hyrax.datasets.hsc:HSCDataset",
    "HyraxCifarDataset": "hyrax.datasets.cifar:HyraxCifarDataset",
    "DecalsRingsDataset": "hyrax.datasets.decals_rings:DecalsRingsDataset",
    "AlertParquetDataset": "hyrax.datasets.alert_archive:AlertParquetDataset",
    "ResultDataset": "hyrax.results.store:ResultDataset",
    "LanceDBDataset": "hyrax.datasets.table:LanceDBDataset",
    "ParquetDataset": "hyrax.datasets.table:ParquetDataset",
    "NestedPandasDataset": "hyrax.datasets.table:NestedPandasDataset",
    "LightCurveDataset": "hyrax.datasets.lightcurve_files:LightCurveDataset",
    "HyraxHATSDataset": "hyrax.datasets.table:HyraxHATSDataset",
    "MultimodalUniverseDataset": "hyrax.datasets.table:MultimodalUniverseDataset",
    "LSSTDataset": "hyrax.datasets.lsst:LSSTDataset",
    "DownloadedLSSTDataset": "hyrax.datasets.lsst:DownloadedLSSTDataset",
    "RangeReadLSSTDataset": "hyrax.datasets.lsst_range:RangeReadLSSTDataset",
    "KafkaStreamDataset": "hyrax.datasets.kafka:KafkaStreamDataset",
    "LSDBStreamDataset": "hyrax.datasets.lsdb_stream:LSDBStreamDataset",
}


def load_builtins() -> None:
    """Make sure every built-in is registered (a user class of the same name keeps precedence)."""
    for name, path in BUILTIN_DATASETS.items():
        if name not in DATASETS:
            DATASETS.register(name, lazy=path)


load_builtins()


def __getattr__(name: str):
    """``from hyrax.datasets import FitsImageDataset``: a built-in, imported when asked for."""
    if name in BUILTIN_DATASETS:
        import importlib

        module, _, attribute = BUILTIN_DATASETS[name].partition(":")
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'hyrax.datasets' has no attribute {name!r}")


__all__ = ["HyraxDataset", "load_builtins", *BUILTIN_DATASETS]
