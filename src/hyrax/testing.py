"""Conformance checks for your own classes: ``check_dataset`` (and, with the models, ``check_model``).

Run them in a notebook cell before a long job; each failure says what is wrong and what to write.

>>> from hyrax.testing import check_dataset
>>> from hyrax.datasets.random import HyraxRandomDataset
>>> report = check_dataset(HyraxRandomDataset)
>>> report[0]
'constructs with (config, data_location=None): HyraxRandomDataset(len=100, ...)'
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from hyrax.errors import HyraxError


class ConformanceError(HyraxError, AssertionError):
    """A class does not follow the Hyrax contract; the message lists every problem."""


def _default_config() -> Mapping:
    from hyrax.config import ConfigManager

    return ConfigManager().config


def _kind_problem(value: Any) -> str | None:
    module = type(value).__module__
    if module.startswith("torch"):
        return (
            "returns a torch tensor; return numpy instead (tensor.numpy()): Hyrax keeps torch inside models"
        )
    if value is None:
        return "returns None; return a value (use NaN for a missing number)"
    if isinstance(value, np.ndarray | np.generic | str | bytes | int | float | bool):
        return None
    if isinstance(value, dict) and value and all(isinstance(key, str) for key in value):
        # a struct's subfields (a Multimodal Universe image: flux, ivar, band...)
        inner = [(key, _kind_problem(v)) for key, v in value.items()]
        return next((f"[{key!r}] {problem}" for key, problem in inner if problem), None)
    return f"returns a {type(value).__name__}; return a numpy array, a number, a string or a dict of those"


def check_dataset(
    dataset: Any, config: Mapping | None = None, data_location: Any = None, max_id_check: int = 1_000_000
) -> list[str]:
    """Check a dataset class (or instance) against the HyraxDataset contract.

    Returns the list of checks that passed; raises :class:`ConformanceError` listing every failure.
    """
    from hyrax.datasets.collate import collate_values
    from hyrax.datasets.dataset import HyraxDataset
    from hyrax.plugins import DATASETS

    passed: list[str] = []
    problems: list[str] = []
    cls = dataset if inspect.isclass(dataset) else type(dataset)
    name = cls.__name__
    if inspect.isclass(dataset):
        try:
            dataset = cls(config if config is not None else _default_config(), data_location)
            passed.append(
                f"constructs with (config, data_location=None): {dataset!r}".replace(
                    ", data_location=None)", ", ...)"
                )
            )
        except Exception as error:  # any failure to construct is the finding
            raise ConformanceError(
                f"{name}(config, data_location) raised {type(error).__name__}: {error}. A dataset's constructor "
                f"takes (config, data_location=None) and calls super().__init__(config, data_location)."
            ) from error
    if not isinstance(dataset, HyraxDataset):
        problems.append(
            f"{name} does not subclass hyrax.datasets.HyraxDataset: subclass it so it registers by name."
        )
    elif DATASETS.get(name) is not cls:
        problems.append(
            f"{name} is not the class registered under its name: another class took the name '{name}'."
        )
    from torch.utils.data import IterableDataset

    if isinstance(dataset, IterableDataset):
        problems += _check_stream(dataset, name, passed, collate_values)
        if problems:
            raise ConformanceError(_report(name, problems))
        return passed
    try:
        length = len(dataset)
    except TypeError:
        raise ConformanceError(
            f"{name} has no __len__: add `def __len__(self)` returning the number of objects."
        ) from None
    if not isinstance(length, int | np.integer) or length < 1:
        problems.append(f"len({name}) is {length!r}; it must be a whole number of at least 1.")
        raise ConformanceError(_report(name, problems))
    passed.append(f"len = {length}")
    fields = dataset.fields() if isinstance(dataset, HyraxDataset) else []
    if "object_id" not in fields:
        problems.append(f"{name} has no get_object_id(idx): add one returning a unique string per object.")
    rows = sorted({0, length // 2, length - 1})
    for field in fields:
        problems += _check_field(dataset, name, field, rows, collate_values)
    if not problems:
        passed.append(
            f"fields {', '.join(fields)} return numpy/scalars/strings, deterministic, one shape per field"
        )
    if "object_id" in fields and length <= max_id_check:
        ids = np.asarray(dataset.column("object_id")).astype(str)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            repeated = unique[counts > 1]
            problems.append(
                f"object ids repeat ({', '.join(repeated[:5])}...): every object needs its own id."
            )
        else:
            passed.append(f"{length} object ids are unique")
    if problems:
        raise ConformanceError(_report(name, problems))
    return passed


def _check_stream(dataset, name: str, passed: list[str], collate_values, count: int = 3) -> list[str]:
    """An iterable dataset: its first samples are dicts with object_id, of numpy/scalars/strings, batchable."""
    import itertools

    problems: list[str] = []
    peek = getattr(dataset, "peek", None)
    try:
        samples = [peek()] if callable(peek) else []
        samples += list(itertools.islice(iter(dataset), count - len(samples)))
    except Exception as error:  # report what reading the stream raised
        return [f"reading the stream raised {type(error).__name__}: {error}"]
    finally:
        close = getattr(dataset, "close", None)
        if callable(close):
            close()
    if not samples:
        return [f"iterating {name} gave no sample: yield dicts of {{field: value}}, each with an object_id."]
    for number, sample in enumerate(samples):
        if not isinstance(sample, dict) or "object_id" not in sample:
            return [
                f"sample {number} is {type(sample).__name__}{'' if not isinstance(sample, dict) else ' without object_id'}: "
                f"yield dicts of {{field: value}} holding an object_id."
            ]
    fields = sorted(k for k in samples[0] if not k.startswith("_"))
    for field in fields:
        values = [sample.get(field) for sample in samples]
        problem = next((p for p in map(_kind_problem, values) if p), None)
        if problem:
            problems.append(f"field '{field}' {problem}.")
            continue
        try:
            collate_values(values, field, [str(s["object_id"]) for s in samples])
        except HyraxError as error:
            problems.append(f"field '{field}' cannot be batched: {error}")
    if not problems:
        passed.append(
            f"a stream: {len(samples)} samples with fields {', '.join(fields[:8])}{' ...' if len(fields) > 8 else ''}"
        )
    return problems


def _check_field(dataset, name: str, field: str, rows: list[int], collate_values) -> list[str]:
    problems = []
    getter = dataset.getter(field)
    values = []
    for row in rows:
        try:
            value = getter(row)
        except Exception as error:  # report, do not stop: the user sees every problem at once
            problems.append(f"get_{field}({row}) raised {type(error).__name__}: {error}")
            return problems
        problem = _kind_problem(value)
        if problem:
            problems.append(f"get_{field}({row}) {problem}.")
            return problems
        again = getter(row)
        if not _same(value, again):
            problems.append(
                f"get_{field}({row}) returned different values on two calls: make getters deterministic."
            )
        values.append(value)
    custom = getattr(dataset, f"collate_{field}", None)
    try:
        if callable(custom):  # the dataset batches this field itself (e.g. pads lists of any length)
            collated = custom([{field: value} for value in values])
            if not isinstance(collated, dict) or field not in collated:
                problems.append(f"collate_{field}(samples) must return a dict holding '{field}'.")
        else:
            collate_values(values, field, [str(r) for r in rows])
    except HyraxError as error:
        problems.append(f"field '{field}' cannot be batched: {error}")
    return problems


def _same(value: Any, again: Any) -> bool:
    if isinstance(value, dict):
        return (
            isinstance(again, dict)
            and value.keys() == again.keys()
            and all(_same(value[key], again[key]) for key in value)
        )
    if isinstance(value, np.ndarray):
        return np.array_equal(value, again, equal_nan=value.dtype.kind == "f")
    return True


def _report(name: str, problems: list[str]) -> str:
    lines = "\n".join(f"  {number}. {problem}" for number, problem in enumerate(problems, start=1))
    return f"{name} does not follow the HyraxDataset contract:\n{lines}"


def check_model(
    model_class: Any, config: Mapping | None = None, dataset: str = "HyraxRandomDataset"
) -> list[str]:
    """Check a @hyrax_model class: it builds from a data sample, trains one batch, infers one row per
    object, and saves and loads to the same outputs. Returns what passed; raises ConformanceError.

    ``dataset`` names the dataset that supplies the batch (images of 3x16x16 from HyraxRandomDataset by
    default; set ``config`` for your own data).
    """
    import copy
    import tempfile
    from pathlib import Path

    import torch

    from hyrax.config import ConfigManager
    from hyrax.datasets.provider import DataProvider
    from hyrax.models.model import check_model_contract, to_torch

    name = getattr(model_class, "__name__", str(model_class))
    if not getattr(model_class, "_hyrax_model", False):
        raise ConformanceError(
            f"{name} is not decorated with @hyrax_model: add `@hyrax_model` above `class {name}`."
        )
    if config is None:
        manager = ConfigManager()
        manager.set_config("data_set.HyraxRandomDataset.shape", [3, 16, 16])
        manager.set_config("data_set.HyraxRandomDataset.provided_labels", [0, 1])
        manager.set_config("data_set.HyraxRandomDataset.size", 8)
        manager.set_config("data_request.train.data", {"dataset_class": dataset})
        config = manager.config
    config = copy.deepcopy(config)
    config["model"]["name"] = name
    if callable(getattr(model_class, "configure_inputs", None)):  # prepare_inputs reads these settings
        model_class.configure_inputs(config)
    provider = DataProvider(config, "train")
    batch = provider.collate([provider[i] for i in range(min(4, len(provider)))])
    passed: list[str] = []
    try:
        model = model_class(config, data_sample=model_class.prepare_inputs(provider.collate([provider[0]])))
    except Exception as error:  # any construction failure is the finding
        raise ConformanceError(
            f"{name}(config, data_sample=...) raised {type(error).__name__}: {error}"
        ) from error
    passed.append("builds from a data sample")
    tensors = check_model_contract(model, batch)
    passed.append("prepare_inputs returns numpy; infer_batch gives one row per object")
    output = model.train_batch(tensors)
    if not isinstance(output, Mapping) or "loss" not in output or not np.isfinite(float(output["loss"])):
        raise ConformanceError(
            f"{name}.train_batch must return {{'loss': <finite float>, ...}}, got {output!r}."
        )
    passed.append(f"train_batch returns a finite loss ({float(output['loss']):.4g})")
    model.eval()
    with torch.no_grad():
        before = model.infer_batch(to_torch(model_class.prepare_inputs(batch)))
    with tempfile.TemporaryDirectory() as directory:
        path = model.save(Path(directory) / "weights.pth")
        twin = model_class(config, data_sample=model_class.prepare_inputs(provider.collate([provider[0]])))
        twin.load(path)
        twin.eval()
        with torch.no_grad():
            after = twin.infer_batch(to_torch(model_class.prepare_inputs(batch)))
    if not torch.allclose(before, after, atol=1e-6):
        raise ConformanceError(
            f"{name}: a saved and reloaded model gives different outputs; save every layer's state."
        )
    passed.append("save/load round trip gives the same outputs")
    return passed
