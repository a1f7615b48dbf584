"""``lookup``: the result vector of one object, by id."""

from __future__ import annotations

import argparse

import numpy as np

from hyrax.verbs.verb import Verb


class LookupVerb(Verb):
    name = "lookup"
    summary = "Print the result vector of an object id (-i ID) from the latest infer run (or -r RUN_DIR)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-i", "--id", required=True, help="the object id")
        parser.add_argument(
            "-r", "--results-dir", metavar="RUN_DIR", help="an infer run directory (default: latest)"
        )

    def run(self, id: str, results_dir=None) -> np.ndarray:  # noqa: A002 - the published argument name
        """The vector of object ``id`` as numpy."""
        from hyrax.results.run_dir import resolve_run
        from hyrax.results.store import ResultDataset

        return ResultDataset(self.config, resolve_run(self.config, "infer", results_dir)).lookup(str(id))

    def run_cli(self, args: argparse.Namespace) -> int:
        vector = self.run(args.id, args.results_dir)
        with np.printoptions(threshold=np.inf, linewidth=120):
            print(vector)
        return 0
