"""The schema of ``[data_request]``: which datasets feed each stage.

::

    [data_request.train.galaxies]          # group "train", friendly name "galaxies"
    dataset_class = "HyraxRandomDataset"
    data_location = "./data"
    fields = ["image", "label"]
    primary_id_field = "object_id"

    [data_request.train.catalog]           # a second dataset, joined to the primary by id
    dataset_class = "HyraxCSVDataset"
    data_location = "./catalog.csv"
    join_field = "object_id"

Every group holds one table per dataset. Exactly one dataset in a group names ``primary_id_field``
(a group with a single dataset may leave it out: that dataset is the primary). Errors name the group and
the friendly name.

>>> check_data_request({"train": {"data": {"dataset_class": "HyraxRandomDataset"}}})
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyrax.config.validate import article, kind_of
from hyrax.plugins import did_you_mean

#: key -> (allowed TOML types, what to write)
SCHEMA: dict[str, tuple[tuple[str, ...], str]] = {
    "dataset_class": (("string",), 'a registered dataset name or import path, e.g. "HyraxRandomDataset"'),
    "data_location": (("string", "boolean"), "a path, or false when the dataset needs none"),
    "fields": (("array", "boolean"), 'a list of field names, e.g. ["image", "label"], or false for all'),
    "primary_id_field": (("string",), 'the id field of the primary dataset, e.g. "object_id"'),
    "join_field": (("string",), "the field of this dataset that holds the primary dataset's ids"),
    "dataset_config": (("table",), "a table of [data_set] keys that apply to this dataset only"),
    "augment": (("boolean", "array"), "true, false, or a list of fields to augment"),
}


def check_data_request(data_request: Mapping[str, Any], source: str = "the config") -> list[str]:
    """Return one message per problem in ``data_request`` (empty when it is valid)."""
    errors: list[str] = []
    for group, datasets in data_request.items():
        at = f"[data_request.{group}] ({source})"
        if not isinstance(datasets, Mapping):
            errors.append(f"{at} must be a table of datasets, got {article(kind_of(datasets))}.")
            continue
        if "dataset_class" in datasets:
            errors.append(
                f"{at} names dataset_class directly. Put each dataset under a friendly name of your "
                f"choice: write [data_request.{group}.data] instead of [data_request.{group}]."
            )
            continue
        if not datasets:
            errors.append(
                f"{at} is empty: add a dataset, e.g. [data_request.{group}.data] with dataset_class."
            )
            continue
        for name, entry in datasets.items():
            errors.extend(_check_entry(group, name, entry, source))
        errors.extend(_check_primary(group, datasets, at))
    return errors


def _check_entry(group: str, name: str, entry: Any, source: str) -> list[str]:
    at = f"data_request.{group}.{name} ({source})"
    if not isinstance(entry, Mapping):
        return [
            f"{at} must be a table with dataset_class, data_location, fields..., got {article(kind_of(entry))}."
        ]
    errors = []
    for key, value in entry.items():
        if key not in SCHEMA:
            errors.append(
                f"Unknown key '{key}' in {at}.{did_you_mean(key, SCHEMA)} Allowed: {', '.join(SCHEMA)}."
            )
            continue
        allowed, what = SCHEMA[key]
        if kind_of(value) not in allowed:
            errors.append(f"'{key}' in {at} must be {what}; got {article(kind_of(value))}.")
        elif key == "fields" and isinstance(value, list) and not _names(value):
            errors.append(f"'fields' in {at} must be a non-empty list of field names; got {value!r}.")
    if "dataset_class" not in entry:
        errors.append(
            f'{at} has no dataset_class: say which dataset to use, e.g. dataset_class = "HyraxRandomDataset".'
        )
    if "primary_id_field" in entry and "join_field" in entry:
        errors.append(
            f"{at} sets both primary_id_field and join_field: join_field belongs to the secondary datasets "
            f"that are joined onto the primary."
        )
    return errors


def _names(values: list) -> bool:
    return bool(values) and all(isinstance(v, str) and v for v in values)


def _check_primary(group: str, datasets: Mapping[str, Any], at: str) -> list[str]:
    primaries = [name for name, e in datasets.items() if isinstance(e, Mapping) and "primary_id_field" in e]
    if len(primaries) > 1:
        return [
            f"{at} has {len(primaries)} primary datasets ({', '.join(primaries)}): exactly one may set "
            f"primary_id_field; give the others a join_field (or nothing, to align them by index)."
        ]
    if not primaries and len(datasets) > 1:
        return [
            f"{at} has {len(datasets)} datasets ({', '.join(datasets)}) but none sets primary_id_field: "
            f'set it on the one whose objects define the rows, e.g. primary_id_field = "object_id".'
        ]
    return []


def primary_dataset(group: Mapping[str, Any]) -> str:
    """The friendly name of a (checked) group's primary dataset."""
    for name, entry in group.items():
        if "primary_id_field" in entry:
            return name
    return next(iter(group))
