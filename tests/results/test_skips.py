"""Skipped objects (data_set.on_bad_object = "skip") through infer, with DataLoader workers: counted in
infer_stats.toml, the run status and the command line's message, and listed in the run."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_hyrax


@pytest.mark.slow  # the default suite stays under ten minutes on 2 cores
def test_infer_counts_objects_skipped_in_workers(write_config, tmp_path):
    config = write_config(
        f"""
        [general]
        results_dir = "{tmp_path / "results"}"
        [model]
        name = "HyraxLoopback"
        [data_set]
        on_bad_object = "skip"
        [data_set.HyraxRandomDataset]
        size = 100
        shape = [3]
        number_invalid_values = 30
        [data_loader]
        num_workers = 2
        batch_size = 8
        [data_request.train.data]
        dataset_class = "HyraxRandomDataset"
        [data_request.infer.data]
        dataset_class = "HyraxRandomDataset"
        """
    )
    from hyrax.config import ConfigManager
    from hyrax.datasets.random import HyraxRandomDataset

    dataset = HyraxRandomDataset(ConfigManager(config).config)
    bad = [i for i in range(100) if not np.isfinite(dataset.get_image(i)).all()]
    assert 0 < len(bad) < 100
    assert run_hyrax("train", "-c", str(config), cwd=tmp_path).returncode == 0
    result = run_hyrax("infer", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = next((tmp_path / "results").glob("*-infer-*"))
    stats = tomllib.loads((run / "infer_stats.toml").read_text())
    status = tomllib.loads((run / "hyrax_run.toml").read_text())
    assert stats["skipped"] == status["skipped"] == len(bad)
    assert stats["objects_written"] == status["results"] == 100 - len(bad)
    assert f"{len(bad)} object(s) skipped" in result.stdout and "skipped_objects.csv" in result.stdout
    listed = pd.read_csv(run / "skipped_objects.csv", dtype={"object_id": str})
    assert sorted(listed["row"]) == bad
