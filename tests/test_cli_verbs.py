"""Every verb through the real command line, on one small pipeline (the notebook API is tested elsewhere)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_hyrax


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    path = root / "config.toml"
    path.write_text(
        f"""
[general]
results_dir = "{root / "results"}"
[model]
name = "HyraxAutoencoder"
[model.HyraxAutoencoder]
latent_dim = 8
base_channel_size = 8
[train]
epochs = 1
[data_loader]
batch_size = 64
num_workers = 0
[reduce_dimensions]
name = "pca"
[split]
train = 0.8
[data_request.train.galaxies]
dataset_class = "DecalsRingsDataset"
[data_request.validate.galaxies]
dataset_class = "DecalsRingsDataset"
[data_request.infer.galaxies]
dataset_class = "DecalsRingsDataset"
"""
    )
    return path


def hyrax(*args, timeout=600):
    return run_hyrax(*args, timeout=timeout)


def test_every_verb_on_the_command_line(config_file, tmp_path):
    steps = [
        (["prepare"], "[train] 376 objects"),
        (["create_splits"], "train: 300 objects"),
        (["model", "--list"], "HyraxAutoencoder"),
        (["model"], "hyrax.models.autoencoder.HyraxAutoencoder"),
        (["train"], "weights and checkpoints:"),
        (["infer"], "376 results of shape (8,)"),
        (["lookup", "--id", "J000411.19+020924.0"], "["),
        (["to_onnx"], "ONNX and torch agree"),
        (["engine"], "376 results of shape (8,)"),
        (["reduce_dimensions"], "376 objects mapped to 2-D"),
        (["save_to_database"], "lance: exact search"),
        (["database_connection", "--id", "J000411.19+020924.0", "-k", "3"], "J000411.19+020924.0"),
        (["outliers", "--top", "3"], "outlier_score"),
        (["label", "J000411.19+020924.0", "--tag", "ring", "--value", "1"], "labelled 1 object"),
        (["labels"], "J000411.19+020924.0"),
        (["rank", "--top", "3"], "combined"),
        (["suggest", "-n", "2"], "acquisition"),
        (["visualize", "--html", str(tmp_path / "map.html")], "map of 376 objects written to"),
    ]
    for args, expected in steps:
        result = hyrax(*args, "-c", str(config_file))
        assert result.returncode == 0, f"hyrax {' '.join(args)}:\n{result.stderr[-2000:]}"
        assert expected in result.stdout, f"hyrax {' '.join(args)} printed:\n{result.stdout[-2000:]}"
    assert (tmp_path / "map.html").stat().st_size > 100_000
    _served_map(config_file)


def _served_map(config_file):
    """`hyrax visualize` serves the live app on 127.0.0.1, prints where, and stops cleanly on Ctrl-C."""
    import re
    import signal
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "hyrax", "visualize", "--port", "0", "-c", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        found = re.search(r"Hyrax map of 376 objects at (http://127\.0\.0\.1:\d+/\?token=[\w-]+) ", line)
        assert found, f"printed {line!r}; stderr: {server.stderr.read() if server.poll() is not None else ''}"
        with urllib.request.urlopen(found.group(1), timeout=30) as page:
            assert b"Bokeh" in page.read()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        # SIGTERM (a scheduler ending the job) stops it cleanly too, and so does SIGINT when the shell that
        # started it left SIGINT ignored (a background job).
        for stop, ignoring in ((signal.SIGTERM, False), (signal.SIGINT, True)):
            again = subprocess.Popen(
                [sys.executable, "-m", "hyrax", "visualize", "--port", "0", "-c", str(config_file)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignoring else None,
            )
            try:
                assert "Hyrax map of 376 objects" in again.stdout.readline()
                again.send_signal(stop)
                assert again.wait(timeout=30) == 0
            finally:
                again.kill()
    finally:
        server.kill()
