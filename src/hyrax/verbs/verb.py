"""The base class of verbs: thin doors from the notebook and the command line into the library.

A verb reads its (private, deep-copied) config, calls the library, writes its run directory if it makes
one, and returns a result. The same class serves ``h.<verb>(...)`` and ``hyrax <verb> ...``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from hyrax.results.run_dir import RunDir


class Verb:
    """Subclass, set ``name`` and ``summary``, implement :meth:`run` (and the CLI hooks if needed)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, config: Mapping):
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each run of a verb is a run context (hyrax.context): a model's static prepare_inputs, a dataset
        # or a hook reads the run's config there. The verb's own run() is wrapped once, so a verb cannot
        # forget it; run_cli goes through run().
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None or getattr(run, "_in_run_context", False):
            return

        @functools.wraps(run)
        def run_in_context(self, *args: Any, **kwargs: Any) -> Any:
            from hyrax.context import run_context

            with run_context(self.name, config=self.config):
                return run(self, *args, **kwargs)

        run_in_context._in_run_context = True
        cls.run = run_in_context

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this verb's own command-line options (``-c`` and ``--log-level`` are already there)."""

    def run_cli(self, args: argparse.Namespace) -> int | None:
        """Run from the command line and print what a terminal user wants to see; return an exit code."""
        self.run()
        return 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"verb '{self.name}' does not implement run()")

    def override(self, **settings: Any) -> None:
        """Set dotted config keys (given as ``{"onnx.input_model_directory": value}`` style keyword names
        with ``__`` for dots) on this verb's private config, for the values that are not None: a verb
        argument is the same as setting its key for one call."""
        from hyrax.config.keys import set_path

        for key, value in settings.items():
            if value is not None:
                set_path(self.config, key.split("__"), str(value) if hasattr(value, "__fspath__") else value)

    def create_run_dir(self, name: str | None = None) -> RunDir:
        """A new run directory for this verb holding the config snapshot; use it as a context manager.
        ``name``: the directory's name when it is not the verb's (see ``run_dir.RUN_NAMES``)."""
        from hyrax.context import record_in_run

        run = RunDir.create(self.config, self.name, name)
        record_in_run(results_dir=run.path)
        return run


def deprecated_option(replacement: str) -> type[argparse.Action]:
    """An argparse action for an old spelling of an option: it stores its value as the new spelling does,
    with a FutureWarning naming the new one. Give it ``help=argparse.SUPPRESS``: ``--help`` shows only the
    spelling to use.

    One meaning per flag across verbs: ``-i/--input-dir`` is the run a verb reads, ``--results-dir`` the
    folder runs are made in (general.results_dir), ``--id`` an object id (docs/migration.md lists the
    old spellings)."""

    class Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            import warnings

            warnings.warn(
                f"{parser.prog} {option_string} is deprecated: use {replacement} (it works for now).",
                FutureWarning,
                stacklevel=2,
            )
            setattr(namespace, self.dest, values)

    return Deprecated


def add_input_dir(parser: argparse.ArgumentParser, short: bool = True, what: str = "an infer run") -> None:
    """``-i/--input-dir RUN_DIR`` (the published name): the run this verb reads. The old ``-r/--results-dir``
    still works, with a warning (``--results-dir`` is the folder runs are made in, as in ``demo``).
    ``short=False``: no ``-i`` (lookup, where ``-i`` was the object id)."""
    parser.add_argument(
        *(("-i",) if short else ()),
        "--input-dir",
        dest="input_dir",
        metavar="RUN_DIR",
        help=f"{what} (default: the latest)",
    )
    parser.add_argument(
        "-r",
        "--results-dir",
        dest="input_dir",
        action=deprecated_option("-i/--input-dir" if short else "--input-dir"),
        help=argparse.SUPPRESS,
    )
