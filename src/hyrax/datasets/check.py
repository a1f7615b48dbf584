"""The check behind ``hyrax prepare``: every problem of the data at once, each with the setting that fixes it.

:func:`check_provider` reads the objects of one ``[data_request]`` group (all of them, or ``limit``
evenly spaced) as training will, in this process, and reports per field the shapes seen and how many of
each, the range of the values, NaN/inf and sentinel pixels (counted before the image path mends them),
images padded or cut, and the objects that cannot be read, by id and reason, instead of stopping at the
first. Nothing is written.

>>> from hyrax import Hyrax
>>> from hyrax.datasets.provider import DataProvider
>>> h = Hyrax()
>>> h.set_config("data_request.train.data", {"dataset_class": "HyraxRandomDataset"})
>>> report = check_provider(DataProvider(h.config, "train"))
>>> report.read, report.problems
(100, [])
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hyrax.datasets.images import ImagePipeline, ImageStats

#: Objects read by default (evenly spaced over larger data).
DEFAULT_LIMIT = 10_000


@dataclass
class FieldStats:
    """What one field's values looked like."""

    shapes: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    low: float = np.inf
    high: float = -np.inf
    nonfinite: int = 0
    examples: dict[tuple, str] = field(default_factory=dict)

    def add(self, value: Any, object_id: str) -> None:
        if isinstance(value, dict):
            return
        array = np.asarray(value)
        self.shapes[array.shape] += 1
        self.dtypes[array.dtype.kind] += 1
        self.examples.setdefault(array.shape, str(object_id))
        if array.dtype.kind in "fiu" and array.size:
            finite = np.isfinite(array) if array.dtype.kind == "f" else None
            if finite is not None and not finite.all():
                self.nonfinite += 1
                array = array[finite]
            if array.size:
                self.low, self.high = min(self.low, float(array.min())), max(self.high, float(array.max()))


@dataclass
class CheckReport:
    """The outcome of :func:`check_provider`: ``lines`` to print, ``problems`` (each with its fix)."""

    group: str
    read: int
    total: int
    fields: dict[str, FieldStats]
    images: dict[str, tuple[ImagePipeline, ImageStats]]
    unreadable: list[tuple[str, str]]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        scope = (
            "every object"
            if self.read == self.total
            else f"{self.read:,} of {self.total:,} objects, evenly spaced"
        )
        lines = [f"Check of [{self.group}] ({scope}):"]
        for name, stats in self.fields.items():
            lines.append(f"  {name}: {_shapes(stats)}{_range(stats.low, stats.high)}")
        for name, (pipeline, stats) in self.images.items():
            lines.append(
                f"  {name} as read: {_counted(stats.shapes)}{_range(stats.low, stats.high)}; normalize = "
                f'"{pipeline.normalize}" ({pipeline.describe()})'
            )
        lines.append(f"  unreadable objects: {len(self.unreadable)}")
        lines.extend(f"  {note}" for note in self.notes)
        if self.problems:
            lines.append("Problems, each with the setting that fixes it:")
            lines.extend(f"  - {problem}" for problem in self.problems)
        else:
            lines.append("No problems found.")
        return "\n".join(lines)


def check_provider(provider, limit: int | None = DEFAULT_LIMIT) -> CheckReport:
    """Read ``provider``'s objects (``limit`` of them at most, evenly spaced; None: all) and report."""
    total = len(provider)
    if limit is not None and total > limit:
        indices = np.unique(np.linspace(0, total - 1, limit).astype(np.int64))
    else:
        indices = np.arange(total)
    images = {
        f"{name}.image": (pipeline, ImageStats())
        for name, dataset in provider.datasets.items()
        if isinstance(pipeline := getattr(dataset, "image_pipeline", None), ImagePipeline)
    }
    fields: dict[str, FieldStats] = {}
    ids: Counter = Counter()
    skip_bad, provider.skip_bad = provider.skip_bad, True
    for pipeline, stats in images.values():
        pipeline.stats = stats
    try:
        from hyrax.progress import Progress

        with Progress(f"checking [{provider.group}]", len(indices), unit="object") as progress:
            for index in indices:
                sample = provider[int(index)]
                progress.update(1)
                if sample is None:
                    continue
                ids[str(sample["object_id"])] += 1
                for name, values in sample.items():
                    if isinstance(values, dict):
                        for key, value in values.items():
                            fields.setdefault(f"{name}.{key}", FieldStats()).add(value, sample["object_id"])
        unreadable = [(object_id, reason) for object_id, reason, _ in provider.take_skipped()]
    finally:
        provider.skip_bad = skip_bad
        for pipeline, _ in images.values():
            pipeline.stats = None
    report = CheckReport(provider.group, len(indices), total, fields, images, unreadable)
    report.problems = _problems(report)
    repeated = [object_id for object_id, count in ids.items() if count > 1]
    if repeated:
        report.problems.insert(
            0,
            f"{len(repeated):,} id(s) occur more than once in {provider.primary_id_field} (e.g. "
            f"{', '.join(repeated[:3])}): results are kept by id, so every object needs its own. Set "
            f"primary_id_field in [data_request.{provider.group}.{provider.primary}] to a unique field "
            f"(offered: {', '.join(sorted(provider.datasets[provider.primary].fields())[:12])}).",
        )
    report.notes = image_notes(report)
    return report


def _problems(report: CheckReport) -> list[str]:
    problems = []
    for name, (pipeline, stats) in report.images.items():
        problems.extend(_image_problems(name, pipeline, stats))
    for name, stats in report.fields.items():
        if len(stats.shapes) > 1 and name not in report.images:
            (common, count), *_ = stats.shapes.most_common(1)
            problems.append(
                f"{name} comes in {len(stats.shapes)} shapes ({_counted(stats.shapes)}), so objects cannot be "
                f"batched together: "
                + (
                    f"set data_set.crop_to = [{common[-2]}, {common[-1]}] to cut or pad every image to one size."
                    if len(common) >= 2 and name.endswith("image")
                    else "make the getter return one shape, or pad it (a light curve: [data_set.lightcurve])."
                )
            )
    if report.unreadable:
        reasons = Counter(_reason(reason) for _, reason in report.unreadable)
        for reason, count in reasons.most_common(5):
            ids = [object_id for object_id, why in report.unreadable if _reason(why) == reason][:3]
            problems.append(
                f"{count:,} object(s) cannot be read ({reason}; e.g. {', '.join(ids)}): fix or remove them, or "
                f'set data_set.on_bad_object = "skip" to leave them out (they are then listed in the run '
                f"directory)."
            )
    return problems


def _image_problems(name: str, pipeline: ImagePipeline, stats: ImageStats) -> list[str]:
    problems = []
    if stats.nonfinite_objects and pipeline.nan_mode is None:
        problems.append(
            f"{name}: {stats.nonfinite_objects:,} object(s) have NaN/inf pixels ({stats.nonfinite_pixels:,} in "
            f"all; e.g. {', '.join(stats.examples.get('nonfinite', []))}), which stop training with "
            f'data_set.nan_mode = false: set data_set.nan_mode = "zero" (background) or "quantile".'
        )
    if len(stats.shapes) > 1 and pipeline.crop_to is None:
        (common, _), *_ = stats.shapes.most_common(1)
        problems.append(
            f"{name} comes in {len(stats.shapes)} sizes ({_counted(stats.shapes)}): set data_set.crop_to = "
            f"[{common[-2]}, {common[-1]}] to cut or pad every image to one size."
        )
    if pipeline.normalize == "none" and np.isfinite(stats.high):
        peak = max(abs(stats.low), abs(stats.high))
        if 0 < peak < 1e-2 or peak > 1e4:
            problems.append(
                f"{name}: pixel values span {stats.low:.3g} to {stats.high:.3g} and are not normalised "
                f'(data_set.normalize = "none"): a model sees near-constant (or huge) inputs; set '
                f'data_set.normalize = "arcsinh" (or "standardize", "percentile").'
            )
    return problems


def image_notes(report: CheckReport) -> list[str]:
    """What the image path did that is no problem but worth knowing (padded, sentinels mended)."""
    notes = []
    for name, (pipeline, stats) in report.images.items():
        if stats.sentinel_objects:
            notes.append(
                f"{name}: {stats.sentinel_objects:,} object(s) have sentinel pixels ({stats.sentinel_pixels:,}; "
                f"|value| >= data_set.sentinel_above or in sentinel_values), treated as missing"
            )
        if stats.nonfinite_objects and pipeline.nan_mode is not None:
            notes.append(
                f"{name}: {stats.nonfinite_objects:,} object(s) have NaN/inf pixels ({stats.nonfinite_pixels:,}; "
                f"e.g. {', '.join(stats.examples.get('nonfinite', []))}), set as data_set.nan_mode = "
                f'"{pipeline.nan_mode}" says'
            )
        if stats.padded or stats.cropped:
            notes.append(
                f"{name}: {stats.padded:,} padded and {stats.cropped:,} cut to data_set.crop_to = "
                f"{list(pipeline.crop_to or ())}"
            )
    return notes


def _reason(reason: str) -> str:
    """A skip reason without the object's own id and numbers, to group alike ones."""
    text = re.sub(r"^Object \S+: ", "", reason.split("\n")[0])
    text = re.sub(r"'[^']*'", "'...'", text)
    return re.sub(r"\d+", "N", text)[:160]


def _counted(shapes: Counter) -> str:
    parts = [f"{'x'.join(map(str, shape)) or 'scalar'}: {count:,}" for shape, count in shapes.most_common(6)]
    return ", ".join(parts) + (" ..." if len(shapes) > 6 else "")


def _shapes(stats: FieldStats) -> str:
    kinds = {
        "f": "float",
        "i": "integer",
        "u": "integer",
        "U": "text",
        "S": "bytes",
        "b": "boolean",
        "O": "object",
    }
    kind = ", ".join(sorted({kinds.get(k, k) for k in stats.dtypes}))
    return f"{kind} {_counted(stats.shapes)}" + (
        f"; NaN/inf in {stats.nonfinite:,} object(s)" if stats.nonfinite else ""
    )


def _range(low: float, high: float) -> str:
    return f"; values {low:.4g} to {high:.4g}" if np.isfinite(low) and np.isfinite(high) else ""
