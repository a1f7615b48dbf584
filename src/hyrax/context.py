"""The run context: what a model's static ``prepare_inputs`` (or a dataset, a hook) can read of the run
it is part of, without being handed it.

Every verb run installs a fresh context (``verb``, ``config``; ``results_dir``, ``rank`` and
``world_size`` once the run directory is known) and puts back what was there before when it ends, so a
verb called inside another leaves the outer run's context as it found it. Streaming sessions capture the
context of the verb that made them and re-enter it around each batch with :func:`use_context`.

The published names (``hyrax.get_context``, ``hyrax.context.use_context``, ``run_context``,
``update_context``, ``clear_context``, ``RunContext``, ``ContextKeys``) are here. Outside a run the
context is empty, and reading a key from it raises a ``KeyError`` saying so:

>>> from hyrax.context import get_context, run_context
>>> with run_context("train", config={"model": {"name": "HyraxLoopback"}}):
...     get_context()["config"]["model"]["name"]
'HyraxLoopback'
>>> "config" in get_context()
False

A model loaded from saved weights runs its saved ``prepare_inputs`` with the ``config`` it was trained
with (saved beside the weights: :data:`hyrax.models.model.PREPARE_INPUTS_CONTEXT`), in this process or a
fresh one; the other keys are the current run's.

The context is one process-wide value, not a per-thread one: reader threads and forked DataLoader
workers of a run see the run's context.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "ContextKeys",
    "RunContext",
    "clear_context",
    "get_context",
    "run_context",
    "update_context",
    "use_context",
]


class ContextKeys(TypedDict, total=False):
    """The keys Hyrax puts in a run context (all optional: the context is empty outside a run)."""

    verb: str  #: the verb that started the run ("train", "infer", "engine", "train_stream", ...)
    config: dict  #: the configuration the run uses (a resumed run: the one it started with)
    results_dir: Path  #: the run directory
    rank: int  #: this process's rank (0 without distribution)
    world_size: int  #: the number of processes of the run (1 without distribution)
    ml_framework: str  #: the framework of an export (to_onnx)


class RunContext(dict):
    """A dict whose missing keys raise a ``KeyError`` that lists the keys there are and says when the
    context is filled."""

    def __missing__(self, key: str) -> Any:
        there = ", ".join(sorted(map(str, self))) or "none: no Hyrax verb is running"
        raise KeyError(
            f"'{key}' is not in the Hyrax run context (keys: {there}). A verb (train, infer, engine, test, "
            "train_stream, infer_stream, ...) fills it for the length of its run."
        )


_current: RunContext = RunContext()


def get_context() -> RunContext:
    """The context of the run under way (an empty :class:`RunContext` outside any run)."""
    return _current


def update_context(**values: Any) -> RunContext:
    """Set keys of the current context (``results_dir`` is made a ``Path``); returns the context."""
    if values.get("results_dir") is not None:
        values["results_dir"] = Path(values["results_dir"])
    _current.update(values)
    return _current


def record_in_run(**values: Any) -> None:
    """:func:`update_context` inside a run; nothing outside one (library code called directly makes no
    context, and must not leave keys in the empty one)."""
    if "verb" in _current:
        update_context(**values)


def clear_context() -> None:
    """Empty the current context (a fresh empty one: contexts captured earlier keep their keys)."""
    global _current
    _current = RunContext()


@contextmanager
def use_context(context: Mapping[str, Any]) -> Iterator[RunContext]:
    """Make ``context`` current for the ``with`` block, then put back the one that was current before
    (the published Hyrax leaves an empty context instead). ``context`` is used as it is when it is a
    :class:`RunContext`, so keys set inside the block stay in it."""
    global _current
    before = _current
    _current = context if isinstance(context, RunContext) else RunContext(context)
    try:
        yield _current
    finally:
        _current = before


@contextmanager
def run_context(verb: str, **values: Any) -> Iterator[RunContext]:
    """A fresh context for one run of ``verb`` (with ``values``), current for the ``with`` block."""
    fresh = RunContext(verb=verb, rank=0, world_size=1)
    if values.get("results_dir") is not None:
        values["results_dir"] = Path(values["results_dir"])
    fresh.update(values)
    with use_context(fresh) as context:
        yield context


def with_saved_config(function, config: Mapping[str, Any] | None):
    """``function`` (a saved ``prepare_inputs``) run with ``config`` as the context's ``config`` (the
    other keys: the current run's); ``function`` itself when there is no saved config."""
    import functools

    if not config:
        return function

    @functools.wraps(function)
    def in_saved_context(*args: Any, **kwargs: Any) -> Any:
        with use_context(RunContext({**_current, "config": config})):
            return function(*args, **kwargs)

    return in_saved_context
