"""``hyrax config [KEY]``: the resolved configuration, or the documentation of one section or key.

In a notebook: ``h.config`` (the resolved config) and ``h.config_help("train.epochs")``.
"""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb


class ConfigVerb(Verb):
    name = "config"
    summary = "Print the resolved configuration, or the documentation of a section or key."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "key", nargs="?", help="a section or dotted key, e.g. train or train.epochs (default: everything)"
        )

    def run_cli(self, args: argparse.Namespace) -> int:
        if args.key:
            from hyrax.config import ConfigManager

            # The manager knows which defaults files (packaged and plugins') document the keys.
            print(ConfigManager(args.runtime_config).help(args.key))
        else:
            print(self.run())
        return 0

    def run(self) -> str:
        """The resolved configuration as TOML text."""
        import tomlkit

        from hyrax.config import to_plain
        from hyrax.config.secrets import masked

        return tomlkit.dumps(masked(to_plain(self.config))).rstrip()
