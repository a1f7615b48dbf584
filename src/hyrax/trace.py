"""Trace mode: follow a few objects through the pipeline (the published Hyrax's ``trace=N``).

``h.train(trace=2)``, ``h.infer(trace=2)`` and ``h.test(trace=2)`` run one epoch over a single batch of
N objects, in the notebook's process (no DataLoader workers), and return a :class:`TraceResult`: the
calls each stage made, with their arguments and results, in order.

Stages: ``resolve_data`` (one call per object: the provider reading its fields), ``collate`` (joining
them into a batch), ``prepare_inputs`` (the model's), ``evaluation`` (train_batch, validate_batch,
infer_batch, test_batch), plus ``dataset_getter`` for your own functions decorated with
:func:`trace_dataset_func` and any stage you name with :func:`trace_func`.

>>> trace = TraceResult(2)
>>> trace.record("collate", "DataProvider__collate", {"samples": [1, 2]}, {"image": 0}, "batch_dict")
>>> call = trace.collate[0]
>>> call["samples"] == call[0] == [1, 2], call.batch_dict
(True, {'image': 0})
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

#: The trace being recorded now, or None.
_current: TraceResult | None = None

STAGES = ("resolve_data", "collate", "prepare_inputs", "evaluation")


def get_trace() -> TraceResult | None:
    """The trace being recorded, or None outside a traced verb."""
    return _current


class TraceCall:
    """One captured call: its arguments by name (``call["batch"]``, ``call.batch``) or position
    (``call[0]``), and its result (``call.result``, or by its result name, ``call.batch_dict``)."""

    def __init__(self, name: str, params: dict[str, Any], result: Any, result_name: str | None):
        self.name, self.params, self.result, self.result_name = name, params, result, result_name

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return list(self.params.values())[key]
        if key == self.result_name:
            return self.result
        return self.params[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(
                f"{self.name} call has no '{key}': arguments {', '.join(self.params) or '(none)'}"
                + (f", result '{self.result_name}'" if self.result_name else "")
            ) from None

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_brief(v)}" for k, v in self.params.items())
        return f"{self.name}({args}) -> {self.result_name or 'result'}: {_brief(self.result)}"

    __repr__ = __str__


class TraceStage(list):
    """The calls of one stage, in order: ``stage[0]`` is a call, ``stage["DataProvider__collate"]`` every
    call of that function."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __getitem__(self, key):
        if isinstance(key, str):
            return [call for call in self if call.name == key]
        return super().__getitem__(key)

    def __str__(self) -> str:
        names: dict[str, int] = {}
        for call in self:
            names[call.name] = names.get(call.name, 0) + 1
        listing = ", ".join(f"{n} x{c}" for n, c in names.items()) or "no calls"
        return f"stage {self.name}: {len(self)} call(s): {listing}"

    __repr__ = __str__


class TraceResult:
    """Every stage's calls: ``trace.collate`` or ``trace["collate"]``; printing it summarises them."""

    def __init__(self, batch_size: int = 1):
        self.batch_size = batch_size
        self.stages: dict[str, TraceStage] = {name: TraceStage(name) for name in STAGES}

    def record(
        self, stage: str, name: str, params: dict, result: Any, result_name: str | None = None
    ) -> None:
        self.stages.setdefault(stage, TraceStage(stage)).append(TraceCall(name, params, result, result_name))

    def __getitem__(self, stage: str) -> TraceStage:
        if stage not in self.stages:
            raise KeyError(f"No trace stage '{stage}'. Stages: {', '.join(self.stages)}.")
        return self.stages[stage]

    def __getattr__(self, stage: str) -> TraceStage:
        if stage.startswith("__") or stage == "stages":
            raise AttributeError(stage)
        try:
            return self[stage]
        except KeyError as error:
            raise AttributeError(str(error)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.stages)

    def __str__(self) -> str:
        lines = [f"Trace of {self.batch_size} object(s):"]
        lines += [f"  {stage}" for stage in self.stages.values()]
        return "\n".join(lines)

    __repr__ = __str__


def trace_func(func=None, *, params_to_capture=None, result_name=None, stage_name: str):
    """Record calls of ``func`` in ``stage_name`` while a trace runs (a no-op otherwise)."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def traced(*args, **kwargs):
            result = function(*args, **kwargs)
            if _current is not None:
                params = _bind(function, args, kwargs)
                if params_to_capture:
                    params = {k: v for k, v in params.items() if k in params_to_capture}
                _current.record(
                    stage_name, function.__qualname__.replace(".", "__"), params, result, result_name
                )
            return result

        return traced

    return decorate if func is None else decorate(func)


def trace_dataset_func(func=None, *, params_to_capture=None, result_name=None, stage_name="dataset_getter"):
    """Record a dataset method (a getter, say) in the ``dataset_getter`` stage while a trace runs."""
    return trace_func(
        func, params_to_capture=params_to_capture, result_name=result_name, stage_name=stage_name
    )


def trace_model_func(func=None, *, params_to_capture=None, result_name=None, stage_name="evaluation"):
    """Record a model method in the ``evaluation`` stage while a trace runs."""
    return trace_func(
        func, params_to_capture=params_to_capture, result_name=result_name, stage_name=stage_name
    )


class TraceContext:
    """While active (``trace`` truthy): a :class:`TraceResult` is being recorded and ``config`` (edited
    in place, returned by ``__enter__``) runs one epoch of one batch of ``trace`` objects in-process."""

    def __init__(self, trace: Any, config: MutableMapping, groups: tuple[str, ...] = ()):
        self.trace, self.config, self.groups = trace, config, groups
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> MutableMapping:
        global _current
        if not self.trace:
            return self.config
        size = int(self.trace) if not isinstance(self.trace, bool) else 1
        _current = TraceResult(size)
        self.config["train"]["epochs"] = 1
        self.config["data_loader"]["batch_size"] = size
        if "num_workers" in self.config["data_loader"]:
            self.config["data_loader"]["num_workers"] = 0  # calls are recorded in this process
        self.config["data_set"]["use_cache"] = False  # the published key: nothing is cached here
        split = self.config.setdefault("split", {})
        for group in self.groups:
            if group in self.config.get("data_request", {}):
                split[group] = size  # a count: one batch of this group
        self._stack.enter_context(_shims())
        logger.warning("trace mode: one batch of %d object(s), one epoch, in this process", size)
        return self.config

    def __exit__(self, *exc) -> None:
        global _current
        self._stack.close()
        _current = None


@contextlib.contextmanager
def _shims():
    """Record what the data loader reads and collates for the duration (restored even on an error).
    Only the loader's batches are recorded, not the one-object probes made to build the model."""
    from hyrax.datasets.loader import _Collate as BatchCollate
    from hyrax.datasets.provider import DataProvider

    original_items, original_call = DataProvider.__getitems__, BatchCollate.__call__

    def resolve(self, request):
        samples = original_items(self, request)
        if _current is not None:
            rows = getattr(request, "indices", request)
            for row, sample in zip(rows, samples, strict=True):
                _current.record(
                    "resolve_data", "DataProvider__resolve_data", {"index": int(row)}, sample, "sample"
                )
        return samples

    def collate(self, samples):
        batch, skipped = original_call(self, samples)
        if _current is not None:
            _current.record("collate", "DataProvider__collate", {"samples": samples}, batch, "batch_dict")
        return batch, skipped

    DataProvider.__getitems__, BatchCollate.__call__ = resolve, collate
    try:
        yield
    finally:
        DataProvider.__getitems__, BatchCollate.__call__ = original_items, original_call


def traced_model(model) -> None:
    """Record this model instance's batch methods in ``evaluation`` while a trace runs."""
    if _current is None:
        return
    for name in ("train_batch", "validate_batch", "infer_batch", "test_batch"):
        method = getattr(model, name, None)
        if callable(method) and not getattr(method, "_hyrax_traced", False):
            setattr(model, name, _recording("evaluation", f"{type(model).__name__}__{name}", method))


def traced_prepare(prepare: Callable) -> Callable:
    """``prepare`` recording its calls in ``prepare_inputs`` while a trace runs."""
    if _current is None or getattr(prepare, "_hyrax_traced", False):
        return prepare
    return _recording("prepare_inputs", "prepare_inputs", prepare, argument="batch", result_name="prepared")


def _recording(stage: str, name: str, function: Callable, argument: str = "batch", result_name=None):
    @functools.wraps(function)
    def wrapper(value, *args, **kwargs):
        result = function(value, *args, **kwargs)
        if _current is not None:
            _current.record(stage, name, {argument: value}, result, result_name)
        return result

    wrapper._hyrax_traced = True
    return wrapper


def _bind(function: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    import inspect

    try:
        bound = inspect.signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {**{str(i): a for i, a in enumerate(args)}, **kwargs}
    return {k: v for k, v in bound.arguments.items() if k != "self"}


def _brief(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__}{tuple(shape)}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_brief(v)}" for k, v in list(value.items())[:6]) + "}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__}[{len(value)}]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
