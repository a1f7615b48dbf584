"""Progress of long stages: log lines with rate and time left when not on a terminal."""

from __future__ import annotations

import logging
import time

from hyrax import progress as progress_module
from hyrax.progress import Progress, Waiting


def test_progress_logs_rate_and_time_left_off_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "LOG_EVERY", 0.0)
    with caplog.at_level(logging.INFO, logger="hyrax.progress"):
        for _ in Progress.over(range(4), total=4, what="outlier scores", unit="object"):
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "outlier scores: 2 of 4 objects (50%)" in line and "/s" in line and "left" in line for line in lines
    )


def test_waiting_says_it_is_still_working(monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "LOG_EVERY", 0.05)
    with caplog.at_level(logging.INFO, logger="hyrax.progress"), Waiting("building the index"):
        time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records]
    assert any("building the index: still working" in line for line in lines)
    assert lines[-1].startswith("building the index: done in")
