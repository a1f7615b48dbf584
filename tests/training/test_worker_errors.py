"""A data error raised in a DataLoader worker reaches the user once, as one paragraph (issue 26, finding 7):
not torch's "Caught DataError in DataLoader worker process 1" with the worker's traceback in its message,
printed again by Ignite twice. The first data error of a run points to `hyrax prepare`."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hyrax.datasets import HyraxDataset
from hyrax.errors import DataError

POINTER = "Run `hyrax prepare` (h.prepare()) to check every object at once."


class NanAtSeventeen(HyraxDataset):
    """40 small images; object 17's has NaN pixels (as a FITS cutout with blanked pixels does)."""

    def __len__(self):
        return 40

    def get_image(self, idx):
        image = np.full((2, 4, 4), float(idx), dtype=np.float32)
        if idx == 17:
            image[0, :2] = np.nan
        return image

    def get_object_id(self, idx):
        return f"obj{idx}"


def write_config(tmp_path, workers: int = 2):
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[general]
results_dir = "{tmp_path / "results"}"
[model]
name = "HyraxLoopback"
[data_request.train.data]
dataset_class = "NanAtSeventeen"
[train]
epochs = 1
[data_loader]
batch_size = 8
num_workers = {workers}
[data_set]
seed = 1
"""
    )
    return path


@pytest.fixture
def cli_logging():
    """hyrax.cli.main sets up the hyrax logger on this test's captured stderr: put it back as it was, so
    the next test does not log into a closed stream (at the debug level this one set)."""
    logger = logging.getLogger("hyrax")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in [h for h in logger.handlers if h not in saved[0]]:
        logger.removeHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def logged_again(caplog) -> list[str]:
    """Records of the error logged at warning level or above (Ignite's "Engine run is terminating due to
    exception: ..." printed it twice more on a terminal; under pytest those go to caplog, not stderr)."""
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "NaN/inf" in r.getMessage()
    ]


def test_a_data_error_in_a_worker_is_one_paragraph_once_on_the_command_line(
    tmp_path, capsys, caplog, cli_logging
):
    from hyrax.cli import main

    assert main(["train", "-c", str(write_config(tmp_path))]) == 1
    assert logged_again(caplog) == []
    err = capsys.readouterr().err
    assert err.count("NaN/inf value(s)") == 1, err
    message = next(line for line in err.splitlines() if "NaN/inf" in line)
    assert message.startswith("hyrax train: error: Object obj17: field 'data.image' has 8 NaN/inf value(s)")
    assert "data_set.nan_mode" in message and message.endswith(POINTER)
    for noise in ("Traceback", "DataLoader worker", "terminating due to exception", 'File "'):
        assert noise not in err, err


@pytest.mark.slow  # ~11 s: the default suite stays under ten minutes on 2 cores
def test_in_a_notebook_the_error_is_the_dataset_s_own_and_nothing_else_is_printed(tmp_path, capsys, caplog):
    from hyrax import Hyrax

    h = Hyrax(config_file=write_config(tmp_path), setup_logging=False)
    with pytest.raises(DataError) as raised:
        h.train()
    assert str(raised.value).startswith("Object obj17: field 'data.image' has 8 NaN/inf value(s)")
    assert str(raised.value).endswith(POINTER) and str(raised.value).count(POINTER) == 1
    assert "Traceback" not in str(raised.value) and "worker" not in str(raised.value)
    assert "NaN/inf" not in capsys.readouterr().err and logged_again(caplog) == []


@pytest.mark.slow  # the one-paragraph error is checked by the two tests above; this one by -m slow
def test_debug_level_logs_the_worker_s_traceback(tmp_path, capsys, cli_logging):
    from hyrax.cli import main

    assert main(["train", "-c", str(write_config(tmp_path)), "--log-level", "debug"]) == 1
    err = capsys.readouterr().err
    assert "raised in a DataLoader worker" in err and "in get_image" not in err  # the provider's check
    assert "_finite" in err  # the frame in the worker that raised it
