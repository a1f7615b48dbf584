"""``prepare``: build the data providers of every [data_request] group and show what they hold."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb


class PrepareVerb(Verb):
    name = "prepare"
    summary = "Load the datasets of every [data_request] group and summarize their fields and sizes."

    def run(self, group: str | None = None) -> dict:
        """``{group: DataProvider}`` for every group (or one), after printing a summary of each."""
        from hyrax.datasets.provider import providers_for

        providers = providers_for(self.config, [group] if group else None)
        for provider in providers.values():
            print(provider.summary())
        return providers

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--group", help="only this data_request group")

    def run_cli(self, args: argparse.Namespace) -> int:
        self.run(args.group)
        return 0
