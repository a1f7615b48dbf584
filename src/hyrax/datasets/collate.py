"""Turning a list of samples into a numpy batch.

Arrays of one shape are stacked, scalars and strings become 1-D arrays. Values missing because a join
found no match (None) are filled (NaN for floats, 0 for integers, "" for strings, False for booleans)
and the batch carries a ``<name>__matched`` mask. Arrays of different shapes are an error that names
the field, the objects and the shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hyrax.errors import DataError


def collate_values(
    values: Sequence[Any], field: str, object_ids: Sequence[str] = (), stack: Callable[[list], Any] = np.stack
) -> Any:
    """Batch one field's values (one per sample) into an array with the batch on axis 0.

    ``stack`` joins arrays of one shape (the loader's worker processes pass one that writes straight
    into shared memory).
    """
    present = [v for v in values if v is not None]
    if present and isinstance(present[0], Mapping):  # a dict per sample: a dict of batches
        return {
            key: collate_values(
                [None if v is None else v[key] for v in values], f"{field}.{key}", object_ids, stack
            )
            for key in present[0]
        }
    if len(present) < len(values):
        values = _fill_missing(values, present)
    first = values[0]
    if isinstance(first, np.ndarray) and first.ndim > 0:
        shapes = {v.shape for v in values}
        if len(shapes) > 1:
            raise DataError(_shape_message(values, field, object_ids))
        return stack(values)
    return np.asarray(values)


def _fill_missing(values: Sequence[Any], present: list[Any]) -> list[Any]:
    if not present:
        return [np.nan] * len(values)
    template = np.asarray(present[0])
    if template.dtype.kind in "US":
        fill: Any = ""
    elif template.dtype.kind == "b":
        fill = False
    elif template.dtype.kind in "iu":
        fill = 0
    else:
        fill = np.nan
    filler = np.full(template.shape, fill, dtype=template.dtype if template.dtype.kind in "fc" else None)
    filler = filler if template.ndim else filler.item()
    return [filler if v is None else v for v in values]


def _shape_message(values: Sequence[np.ndarray], field: str, object_ids: Sequence[str]) -> str:
    by_shape: dict[tuple, list[str]] = {}
    for position, value in enumerate(values):
        name = object_ids[position] if position < len(object_ids) else f"sample {position}"
        by_shape.setdefault(value.shape, []).append(str(name))
    listing = "; ".join(
        f"{shape}: {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''}" for shape, ids in by_shape.items()
    )
    if all(value.ndim == 1 for value in values):  # a light curve, a spectrum: one value per observation
        fix = (
            "Resample light curves to one length with [data_set.lightcurve] (its field, e.g. fields = "
            '["lightcurve"]), leave this field out of the request\'s fields, or give the dataset a '
            f"collate_{field} method."
        )
    else:
        fix = (
            f"Set data_set.crop_to = [height, width] to cut every image to one size, or give the dataset a "
            f"collate_{field} method."
        )
    return f"Field '{field}' has arrays of different shapes in one batch ({listing}). {fix}"
