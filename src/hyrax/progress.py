"""Progress of long stages: a tqdm bar on a terminal, else a log line now and then, both with the rate
and the time left.

>>> total = 0
>>> for batch in Progress.over(range(3), total=3, what="demo", unit="batch"):
...     total += batch
>>> with Progress("objects", total=10, unit="object") as progress:
...     progress.update(10)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger("hyrax.progress")

#: Seconds between log lines when stderr is not a terminal (a batch job's log).
LOG_EVERY = 30.0


class Progress:
    """Counts work done towards ``total``; shows a bar on a terminal, or logs ``what: done/total (rate,
    time left)`` every :data:`LOG_EVERY` seconds otherwise (so Slurm logs show how a job goes).

    Args:
        what: the stage, as the user knows it ("infer", "outlier scores"...).
        total: how much work there is (None when unknown).
        unit: what is counted ("object", "batch"...).
        enabled: False for a process that should stay quiet (ranks other than 0).
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "object", enabled: bool = True):
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self.enabled = enabled
        self.started = self._last_log = time.monotonic()
        self.bar = None
        if enabled and _on_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=unit, unit_scale=True, smoothing=0.05, leave=False)

    @classmethod
    def over(
        cls,
        items: Iterable[Any],
        total: int | None = None,
        what: str = "",
        unit: str = "item",
        size=None,
        enabled: bool = True,
    ) -> Iterator[Any]:
        """Iterate ``items``, counting each (or ``size(item)`` of each)."""
        with cls(what, total, unit, enabled) as progress:
            for item in items:
                yield item
                progress.update(size(item) if size is not None else 1)

    def update(self, amount: int = 1) -> None:
        self.done += int(amount)
        if self.bar is not None:
            self.bar.update(int(amount))
        elif self.enabled and time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            logger.info("%s", self.line())

    def line(self) -> str:
        """``what: done of total unit (rate/s, about N left)``."""
        seconds = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / seconds
        text = f"{self.what}: {self.done:,}"
        if self.total:
            text += f" of {self.total:,} {self.unit}s ({100 * self.done / self.total:.0f}%)"
        else:
            text += f" {self.unit}s"
        text += f", {rate:,.0f}/s"
        if self.total and rate > 0:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Waiting:
    """For one long call that reports nothing (a library building an index): a line every
    :data:`LOG_EVERY` seconds saying it is still working and for how long (a spinner on a terminal).

    >>> with Waiting("building"):
    ...     pass
    """

    def __init__(self, what: str):
        self.what = what
        self._stop = None

    def __enter__(self) -> Waiting:
        import threading

        self._stop = threading.Event()
        self.started = time.monotonic()
        bar = None
        if _on_terminal():
            from tqdm import tqdm

            bar = tqdm(desc=self.what, bar_format="{desc}: {elapsed}", leave=False)

        def beat():
            while not self._stop.wait(1.0 if bar is not None else LOG_EVERY):
                if bar is not None:
                    bar.refresh()
                else:
                    logger.info(
                        "%s: still working, %s so far", self.what, _duration(time.monotonic() - self.started)
                    )
            if bar is not None:
                bar.close()

        self._thread = threading.Thread(target=beat, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        logger.info("%s: done in %s", self.what, _duration(time.monotonic() - self.started))


def _on_terminal() -> bool:
    return sys.stderr.isatty()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
