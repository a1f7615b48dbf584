"""``model``: the class model.name names (CLI: print it and its config section)."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb


class ModelVerb(Verb):
    name = "model"
    summary = (
        "Show the model class that model.name names and its [model.<Name>] settings (--list: all models)."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--list", action="store_true", help="list the registered models")

    def run(self):
        """The model class (not an instance)."""
        from hyrax.training.loop import model_class

        return model_class(self.config)

    def run_cli(self, args: argparse.Namespace) -> int:
        if args.list:
            from hyrax.models import load_builtins
            from hyrax.plugins import MODELS

            load_builtins()
            print("\n".join(MODELS.names()))
            return 0
        import inspect

        import tomlkit

        cls = self.run()
        print(f"{cls.__module__}.{cls.__qualname__}")
        doc = inspect.getdoc(cls)
        if doc:
            print(doc)
        section = self.config["model"].get(cls.__name__)
        if section:
            from hyrax.config import to_plain

            print(tomlkit.dumps({"model": {cls.__name__: to_plain(section)}}).rstrip())
        return 0
