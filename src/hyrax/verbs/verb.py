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
    #: True for verbs that only make sense on the command line (no h.<verb>() method).
    cli_only: ClassVar[bool] = False

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

    def create_run_dir(self) -> RunDir:
        """A new run directory for this verb holding the config snapshot; use it as a context manager."""
        return RunDir.create(self.config, self.name)
