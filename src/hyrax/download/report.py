"""What a download tells its user: a progress bar on a terminal, throughput in the log every
``download.stats_print_interval`` seconds, and a summary at the end.

>>> summary = DownloadSummary(requested=10, skipped=2, done=7, failed=1, objects=5, filters=2,
...                           reasons={"the service answered HTTP 503": 1}, data_dir="data")
>>> print(summary)  # doctest: +NORMALIZE_WHITESPACE
10 cutouts (5 objects x 2 filters) in data: 7 downloaded, 2 already there, 1 failed.
  1 x the service answered HTTP 503
Run `hyrax download` again to retry the failed ones (their reasons are in the column 'reason' of
data/manifest.parquet).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("hyrax.download")

#: Distinct failure reasons counted one by one; the rest are counted together.
_MAX_REASONS = 100


@dataclass
class DownloadSummary:
    """Counts of one download: ``requested`` = ``skipped`` (done before) + ``done`` + ``failed``."""

    requested: int
    skipped: int
    done: int
    failed: int
    objects: int
    filters: int
    reasons: dict[str, int] = field(default_factory=dict)
    data_dir: Path | str = ""
    megabytes: float = 0.0
    seconds: float = 0.0
    run_dir: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every requested cutout is on disk."""
        return self.failed == 0 and self.skipped + self.done == self.requested

    def __str__(self) -> str:
        lines = [
            f"{self.requested:,} cutouts ({self.objects:,} objects x {self.filters} filters) in {self.data_dir}: "
            f"{self.done:,} downloaded, {self.skipped:,} already there, {self.failed:,} failed."
        ]
        for reason, count in sorted(self.reasons.items(), key=lambda item: -item[1])[:10]:
            lines.append(f"  {count:,} x {reason}")
        if self.failed:
            lines.append(
                "Run `hyrax download` again to retry the failed ones (their reasons are in the column 'reason' "
                f"of {Path(self.data_dir) / 'manifest.parquet'})."
            )
        if self.seconds and self.done:
            lines.append(
                f"{self.megabytes:,.1f} MB in {self.seconds:,.1f} s ({self.done / self.seconds:,.1f} cutouts/s)."
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "requested": self.requested,
            "skipped": self.skipped,
            "done": self.done,
            "failed": self.failed,
            "objects": self.objects,
            "filters": self.filters,
            "megabytes": round(self.megabytes, 3),
            "seconds": round(self.seconds, 3),
            "data_dir": str(self.data_dir),
            "reasons": dict(self.reasons),
        }


class Progress:
    """Counts cutouts as requests finish; draws a bar on a terminal and logs throughput periodically."""

    def __init__(self, total: int, skipped: int, interval: float):
        self.total, self.skipped, self.interval = total, skipped, interval
        self.done = self.failed = self.bytes = 0
        self.reasons: Counter[str] = Counter()
        self.started = self._last_time = time.monotonic()
        self._last_done = self._last_bytes = 0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cutout", desc="download", smoothing=0.05)

    def add(self, done: int, failures: list[str], nbytes: int) -> None:
        self.done += done
        self.failed += len(failures)
        self.bytes += nbytes
        for reason in failures:
            if reason in self.reasons or len(self.reasons) < _MAX_REASONS:
                self.reasons[reason] += 1
            else:
                self.reasons["(other reasons)"] += 1
        if self.bar is not None:
            self.bar.update(done + len(failures))
            self.bar.set_postfix(failed=self.failed, refresh=False)

    def seconds_to_report(self) -> float:
        return max(0.05, self._last_time + self.interval - time.monotonic())

    def report_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_time < self.interval:
            return
        elapsed = now - self._last_time
        finished = self.done + self.failed
        logger.info(
            "download: %s of %s cutouts (%d%%): %s done, %s failed; %.1f cutouts/s, %.2f MB/s over the last %.0f s"
            "%s",
            f"{finished:,}",
            f"{self.total:,}",
            100 * finished // max(self.total, 1),
            f"{self.done:,}",
            f"{self.failed:,}",
            (self.done - self._last_done) / elapsed,
            (self.bytes - self._last_bytes) / elapsed / 1e6,
            elapsed,
            f"; {self.skipped:,} were already there" if self.skipped else "",
        )
        self._last_time, self._last_done, self._last_bytes = now, self.done, self.bytes

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def summary(self, requested: int, objects: int, filters: int, data_dir: Path) -> DownloadSummary:
        return DownloadSummary(
            requested=requested,
            skipped=self.skipped,
            done=self.done,
            failed=self.failed,
            objects=objects,
            filters=filters,
            reasons=dict(self.reasons),
            data_dir=data_dir,
            megabytes=self.bytes / 1e6,
            seconds=time.monotonic() - self.started,
        )
