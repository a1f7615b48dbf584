"""``lookup``: the result vector of one object, by id."""

from __future__ import annotations

import argparse

import numpy as np

from hyrax.verbs.verb import Verb, add_input_dir, deprecated_option


class LookupVerb(Verb):
    name = "lookup"
    summary = "Print the result vector of an object id (--id ID) from the latest infer run (or --input-dir RUN_DIR)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        given = parser.add_mutually_exclusive_group(required=True)
        given.add_argument("--id", help="the object id")
        # The published `-i ID`: -i is the input run in every other verb.
        given.add_argument("-i", dest="id", action=deprecated_option("--id"), help=argparse.SUPPRESS)
        add_input_dir(parser, short=False)

    def run(self, id: str, results_dir=None, *, input_dir=None) -> np.ndarray:  # noqa: A002 - the published name
        """The vector of object ``id`` as numpy, from the infer run ``input_dir`` (or ``results_dir``, the
        published name; default: the latest)."""
        from hyrax.results.run_dir import resolve_run
        from hyrax.results.store import ResultDataset

        run = resolve_run(self.config, "infer", input_dir or results_dir)
        return ResultDataset(self.config, run).lookup(str(id))

    def run_cli(self, args: argparse.Namespace) -> int:
        vector = self.run(args.id, input_dir=args.input_dir)
        with np.printoptions(threshold=np.inf, linewidth=120):
            print(vector)
        return 0
