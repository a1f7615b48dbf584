"""The base class of verbs: thin doors from the notebook and the command line into the library.

A verb reads its (private, deep-copied) config, calls the library, writes its run directory if it makes
one, and returns a result. The same class serves ``h.<verb>(...)`` and ``hyrax <verb> ...``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, ClassVar

from hyrax.results.run_dir import RunDir


class Verb:
    """Subclass, set ``name`` and ``summary``, implement :meth:`run` (and the CLI hooks if needed)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, config: Mapping):
        self.config = config

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
        return RunDir.create(self.config, self.name, name)


def add_input_dir(parser: argparse.ArgumentParser) -> None:
    """``-i/--input-dir RUN_DIR`` (the published name; ``-r/--results-dir`` too): the infer run to use."""
    parser.add_argument(
        "-i",
        "--input-dir",
        "-r",
        "--results-dir",
        dest="input_dir",
        metavar="RUN_DIR",
        help="an infer run (default: the latest)",
    )
