"""Import paths of the published Hyrax that its notebooks use: they still work here."""

from __future__ import annotations


def test_published_import_paths_give_our_objects(tmp_path):
    from hyrax import Hyrax
    from hyrax.config_utils import find_most_recent_results_dir
    from hyrax.datasets import HyraxDataset as ours
    from hyrax.datasets.dataset_registry import HyraxDataset
    from hyrax.datasets.random import HyraxRandomDataset as our_random
    from hyrax.datasets.random.hyrax_random_dataset import HyraxRandomDataset
    from hyrax.datasets.result_dataset import ResultDataset
    from hyrax.models import hyrax_model as our_decorator
    from hyrax.models.model_registry import hyrax_model
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultDataset as our_results

    assert HyraxDataset is ours and HyraxRandomDataset is our_random and hyrax_model is our_decorator
    assert ResultDataset is our_results
    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path))
    assert find_most_recent_results_dir(h.config, "umap") is None
    run = RunDir.create(h.config, "reduce_dimensions", "umap")
    run.mark_complete()
    # Reduce runs are named after their algorithm, as published: "umap" finds them, and so does our verb.
    assert find_most_recent_results_dir(h.config, "umap") == run.path
    assert find_most_recent_results_dir(h.config, "pca") is None
    assert find_most_recent_results_dir(h.config, "reduce_dimensions") == run.path
    # A run directory written by the published Hyrax (mixed-case tag) is found too.
    published = tmp_path / "20300101-000000-onnx-6Ssf"
    RunDir.create(h.config, "to_onnx", "onnx").path.rename(published)
    RunDir(published).mark_complete()
    assert find_most_recent_results_dir(h.config, "onnx") == published
    assert find_most_recent_results_dir(h.config, "to_onnx") == published


def test_published_import_paths_of_the_datasets():
    """The published module of each built-in dataset gives ours (its notebooks and tests import them)."""
    import importlib

    from hyrax.plugins import DATASETS

    published = {
        "hats_dataset": "HyraxHATSDataset",
        "lancedb_dataset": "LanceDBDataset",
        "nested_pandas_dataset": "NestedPandasDataset",
        "mmu_dataset": "MultimodalUniverseDataset",
        "lsst_dataset": "LSSTDataset",
        "downloaded_lsst_dataset": "DownloadedLSSTDataset",
        "kafka_stream_dataset": "KafkaStreamDataset",
        "hsc_dataset": "HSCDataset",
        "fits_image_dataset": "FitsImageDataset",
        "hyrax_csv_dataset": "HyraxCSVDataset",
        "hyrax_cifar_dataset": "HyraxCifarDataset",
    }
    for module, name in published.items():
        assert getattr(importlib.import_module(f"hyrax.datasets.{module}"), name) is DATASETS.get(name), (
            module
        )
