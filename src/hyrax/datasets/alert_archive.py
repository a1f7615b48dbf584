"""``AlertParquetDataset``: alerts exported by a broker as Parquet (Fink's and the ZTF archive's layout: one
row per alert, the alert's fields as columns, records such as ``candidate`` as structs, cutout stamps as
binary gzipped FITS), read as map-style samples, for training on archived alerts the model then serves
on the stream.

Each row decodes as a streamed alert does (:func:`hyrax.stream.alerts.flatten`): ``image`` (the science,
template and difference stamps stacked), ``object_id``, ``alert_id`` and every scalar, nested ones as
``<record>.<field>`` (``candidate.magpsf``). ``data_location``: a Parquet file or a directory of them;
exports of different schemas may sit in one directory: the fields are those every file has, and the image
the stamps every file has (a warning names what a file lacks). Rows are read a row group at a time (the
last one kept), so an archive is never held in memory.

Stamps as a broker's users expect them (:class:`AlertImages`, the one image path of
:mod:`hyrax.datasets.images`): masked pixels (NaN, and float32's maximum 3.4e38 that ZTF writes) are
background; stamps cut at a CCD edge (63 x 41) are padded about their centre to the archive's stamp size
(the most common among its first alerts, 63 x 63 for ZTF; ``data_set.crop_to`` chooses); each stamp is
normalised, by default minus its median, over its noise, then arcsinh.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.datasets.dataset import HyraxDataset
from hyrax.datasets.images import ImagePipeline, say_once
from hyrax.errors import ConfigError, DataError

#: What "auto" means for alert stamps (see hyrax.datasets.images).
STAMP_DEFAULTS = {"normalize": "arcsinh", "nan_mode": "zero"}


class AlertImages:
    """An alert's ``image``: its stamps (science, template, difference: those in ``kinds``) each cleaned,
    cut or padded to one size, stacked and normalised per stamp, as :mod:`hyrax.datasets.images` says."""

    def __init__(self, config: Mapping, dataset: str, kinds: tuple[str, ...] | None = None):
        from hyrax.stream.alerts import STAMP_ORDER

        self.pipeline = ImagePipeline.from_config(config, dataset, STAMP_DEFAULTS)
        self.kinds = tuple(kinds or STAMP_ORDER)
        self.dataset = dataset

    def size_from(self, samples: list[dict[str, Any]]) -> None:
        """Without data_set.crop_to, stamps are cut or padded to the most common stamp size of
        ``samples`` (the first alerts), squared to its longer side when only one alert is known."""
        from collections import Counter

        from hyrax.stream.alerts import find_stamp

        if self.pipeline.crop_to is not None:
            return
        shapes = Counter(
            stamp.shape
            for sample in samples
            for stamp in (find_stamp(sample, kind) for kind in self.kinds)
            if stamp is not None
        )
        if not shapes:
            return
        (height, width), _ = shapes.most_common(1)[0]
        if len(samples) < 2:
            height = width = max(height, width)
        self.pipeline.crop_to = (int(height), int(width))
        say_once(
            self.dataset,
            "stamp size",
            "%s: stamps are cut or padded to %dx%d (the most common size of the first %d alert(s); set "
            "data_set.crop_to to choose)",
            self.dataset,
            height,
            width,
            len(samples),
        )

    def __call__(self, sample: Mapping[str, Any], label: str) -> np.ndarray:
        cleaned = self.clean(sample, label)
        if cleaned is None:
            return np.asarray(sample["image"], dtype=np.float32)  # a JSON message's own image
        return self.pipeline.finish(cleaned, label)

    def clean(self, sample: Mapping[str, Any], label: str) -> np.ndarray | None:
        """The stamps stacked, cleaned and cut or padded, not yet normalised (``pipeline.finish`` does that,
        for a stream a batch at a time); None for a sample with its own ``image`` and no stamps."""
        from hyrax.stream.alerts import find_stamp

        # find_stamp among the 2-D arrays only: a Rubin alert has ~200 fields, ~3 stamps
        arrays = {k: v for k, v in sample.items() if isinstance(v, np.ndarray) and v.ndim == 2}
        stamps = [find_stamp(arrays, kind) for kind in self.kinds]
        missing = [kind for kind, stamp in zip(self.kinds, stamps, strict=True) if stamp is None]
        if missing:
            if "image" in sample and not any(s is not None for s in stamps):
                return None
            raise DataError(
                f"{label} has no {' or '.join(missing)} stamp to stack into image (it has "
                f"{', '.join(k for k in sample if 'cutout' in k.lower() and isinstance(sample[k], np.ndarray)) or 'none'}). "
                f'Set data_set.on_bad_object = "skip" to leave such alerts out.'
            )
        if self.pipeline.crop_to is None:
            self.size_from([sample])
        pipeline = self.pipeline
        if pipeline.stats is None and pipeline.nan_mode != "quantile" and len({s.shape for s in stamps}) == 1:
            # the stamps cleaned as one stack (a third of the calls): the same pixels, as no step but the
            # quantile fill (of each stamp's own pixels) and the counts of hyrax prepare looks across them
            return pipeline.clean(np.stack(stamps), label)
        return np.stack([pipeline.clean(stamp, label) for stamp in stamps])


class AlertParquetDataset(HyraxDataset):
    """Alerts from Parquet exports; fields ``image``, ``object_id``, ``alert_id`` and the alert's scalars.

    Each alert is one sample, so its id is ``alert_id`` (ZTF's candid): an object (``object_id``) has an
    alert per detection. ``primary_id_field = "object_id"`` in ``[data_request]`` chooses the object's.
    """

    default_id_field = "alert_id"

    def __init__(self, config: Mapping, data_location: str | Path | None = None):
        import pyarrow.parquet as pq

        if not data_location:
            raise ConfigError(
                "AlertParquetDataset needs data_location: a Parquet file of alerts, or a directory of them."
            )
        location = Path(data_location).expanduser()
        files = sorted(location.rglob("*.parquet")) if location.is_dir() else [location]
        if not files or not files[0].is_file():
            raise ConfigError(f"AlertParquetDataset: no Parquet files at data_location '{location}'.")
        self._files = [pq.ParquetFile(path) for path in files]
        self._paths = files
        groups = [(f, g) for f in range(len(files)) for g in range(self._files[f].num_row_groups)]
        sizes = [self._files[f].metadata.row_group(g).num_rows for f, g in groups]
        self._groups = groups
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._cached: tuple[int, list[dict]] | None = None
        self._sample: tuple[int, dict[str, Any]] | None = None
        super().__init__(config, location)
        self._field_names, kinds = self._common_fields()
        self.stamps = AlertImages(config, type(self).__name__, kinds)
        self.image_pipeline = self.stamps.pipeline
        first = [self._decoded_or_none(row) for row in range(min(len(self), 64))]
        self.stamps.size_from([sample for sample in first if sample is not None])

    def _first_rows(self) -> list[tuple[Path, dict[str, Any]]]:
        """The first readable alert of each file, from its first 16 rows alone (not its row groups whole:
        a folder of a broker's nightly exports is read for its schemas, not its alerts)."""
        from hyrax.stream.alerts import AlertError, flatten

        found = []
        for path, handle in zip(self._paths, self._files, strict=True):
            batch = next(handle.iter_batches(batch_size=16), None)
            for record in batch.to_pylist() if batch is not None else []:
                try:
                    found.append((path, flatten(record)))
                    break
                except AlertError:
                    continue
        return found

    def _common_fields(self) -> tuple[list[str], tuple[str, ...] | None]:
        """Fields and stamps that every file's alerts have; a warning names what a file lacks."""
        import logging

        from hyrax.stream.alerts import STAMP_ORDER, find_stamp

        firsts = self._first_rows()
        if not firsts:
            return [], None
        common = set.intersection(*(set(sample) for _, sample in firsts))
        kinds = tuple(k for k in STAMP_ORDER if all(find_stamp(s, k) is not None for _, s in firsts))
        every = set.union(*(set(sample) for _, sample in firsts))
        for path, sample in firsts:
            lacking = [f"{k} stamps" for k in STAMP_ORDER if find_stamp(sample, k) is None]
            fields = sorted(every - set(sample))
            if lacking or fields:
                shown = ", ".join(fields[:4]) + (f" and {len(fields) - 4} more" if len(fields) > 4 else "")
                logging.getLogger(__name__).warning(
                    "AlertParquetDataset: %s lacks %s that other files have: image holds the %s stamps of "
                    "every alert, and the fields are those every file has",
                    path.name,
                    ", ".join([*lacking, *([f"field(s) {shown}"] if fields else [])]),
                    ", ".join(kinds) or "no",
                )
        common.add("image")
        return sorted(common), kinds or None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _decoded(self, idx: int) -> dict[str, Any]:
        from hyrax.stream.alerts import AlertError, flatten

        idx = int(idx)
        if self._sample is not None and self._sample[0] == idx:
            return self._sample[1]
        if not 0 <= idx < len(self):
            raise IndexError(f"AlertParquetDataset has {len(self)} alerts; row {idx} asked")
        group = int(np.searchsorted(self._starts, idx, side="right") - 1)
        if self._cached is None or self._cached[0] != group:
            file, number = self._groups[group]
            self._cached = (group, self._files[file].read_row_group(number).to_pylist())
        record = self._record(idx)
        try:
            sample = flatten(record)
        except AlertError as error:
            file, _ = self._groups[group]
            raise DataError(f"{_label(record, idx)} (in {self._paths[file]}): {error}") from None
        self._sample = (idx, sample)
        return sample

    def _record(self, idx: int) -> dict[str, Any]:
        """The alert's record as exported (nothing decoded), its row group read once."""
        group = int(np.searchsorted(self._starts, idx, side="right") - 1)
        if self._cached is None or self._cached[0] != group:
            file, number = self._groups[group]
            self._cached = (group, self._files[file].read_row_group(number).to_pylist())
        return self._cached[1][idx - self._starts[group]]

    def _decoded_or_none(self, idx: int) -> dict[str, Any] | None:
        try:
            return self._decoded(idx)
        except DataError:
            return None

    def fields(self) -> list[str]:
        return sorted(set(super().fields()) | set(self._field_names))

    def getter(self, field: str):
        if field in self._field_names and not callable(getattr(self, f"get_{field}", None)):
            if "cutout" in field.lower():  # one stamp alone goes through the image path too
                return lambda idx: self._stamp(idx, field)
            return lambda idx: self._decoded(idx)[field]
        return super().getter(field)

    def _stamp(self, idx: int, field: str):
        value = self._decoded(idx)[field]
        if isinstance(value, np.ndarray) and value.ndim == 2:
            return self.image_pipeline(value, _label(self._decoded(idx), idx))
        return value

    def get_image(self, idx: int) -> np.ndarray:
        """The alert's stamps (3, height, width), as :class:`AlertImages` makes them."""
        sample = self._decoded(idx)
        return self.stamps(sample, _label(sample, idx))

    def get_object_id(self, idx: int) -> str:
        """The alert's object id (its alert id when it has none), read without decoding its stamps, so an
        alert whose stamps cannot be read is still named (and skipped) by its ids."""
        alert, obj = _ids(self._record(int(idx)))
        if obj is None and alert is None:
            return str(self._decoded(idx)["object_id"])
        return str(obj if obj is not None else alert)

    def get_alert_id(self, idx: int):
        alert, _ = _ids(self._record(int(idx)))
        return alert if alert is not None else self._decoded(idx)["alert_id"]


def _label(record: Mapping[str, Any], row: int) -> str:
    """An alert named as its broker names it: alert (candid) and object id, and the row it is in."""
    alert, obj = _ids(record)
    parts = [f"Alert {alert}" if alert is not None else f"Alert in row {row}"]
    if obj is not None:
        parts.append(f"(object {obj}, row {row})" if alert is not None else f"(object {obj})")
    elif alert is not None:
        parts.append(f"(row {row})")
    return " ".join(parts)


def _ids(record: Mapping[str, Any]) -> tuple[Any, Any]:
    """(alert id, object id) of a record as exported or decoded, each None when it has none."""
    from hyrax.stream.alerts import ALERT_ID_NAMES, ID_NAMES

    def find(names):
        for name in names:
            head, _, tail = name.partition(".")
            value = record.get(name)
            if value is None and tail and isinstance(record.get(head), Mapping):
                value = record[head].get(tail)
            if value is None and isinstance(record.get("candidate"), Mapping):
                value = record["candidate"].get(name)
            if value is not None:
                return value
        return None

    return find(ALERT_ID_NAMES), find(ID_NAMES)
