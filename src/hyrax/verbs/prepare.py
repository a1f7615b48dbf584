"""``prepare``: build the data providers of every [data_request] group, show what they hold, and check
their objects: every problem at once, each with the setting that fixes it (:mod:`hyrax.datasets.check`)."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb


class PrepareVerb(Verb):
    name = "prepare"
    summary = (
        "Load the datasets of every [data_request] group, summarize their fields and check their objects "
        "(shapes, NaN, sentinels, value ranges, unreadable objects), each problem with its fix."
    )

    def run(self, group: str | None = None, check: int | bool | None = True) -> dict:
        """``{group: DataProvider}`` for every group (or one), after printing a summary of each and, unless
        ``check`` is False, a check of its objects (``True``: up to 10,000 evenly spaced; a number: that
        many; ``None``: every object). The reports are kept in ``provider.check_report``."""
        from hyrax.datasets.check import DEFAULT_LIMIT, check_provider
        from hyrax.datasets.provider import providers_for

        providers = providers_for(self.config, [group] if group else None)
        for provider in providers.values():
            print(provider.summary())
            if check is not False and _sized(provider):
                limit = DEFAULT_LIMIT if check is True else check
                provider.check_report = check_provider(provider, limit)
                print(provider.check_report.text())
        return providers

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--group", help="only this data_request group")
        parser.add_argument(
            "--check",
            default=None,
            metavar="N|all|none",
            help="objects to read in the check (default 10000, evenly spaced; 'all': every one; 'none': skip)",
        )

    def run_cli(self, args: argparse.Namespace) -> int:
        from hyrax.errors import ConfigError

        value = (args.check or "").strip().lower()
        if value in ("", "default"):
            check: int | bool | None = True
        elif value == "all":
            check = None
        elif value == "none":
            check = False
        elif value.isdigit() and int(value) > 0:
            check = int(value)
        else:
            raise ConfigError(f"--check takes a number of objects, 'all' or 'none'; got '{args.check}'.")
        providers = self.run(args.group, check)
        problems = sum(len(p.check_report.problems) for p in providers.values() if p.check_report)
        return 1 if problems else 0


def _sized(provider) -> bool:
    try:
        return len(provider) > 0
    except TypeError:  # a stream: nothing to check ahead
        return False
