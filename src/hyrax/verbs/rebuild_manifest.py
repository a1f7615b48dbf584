"""``rebuild_manifest``: write ``<data_dir>/manifest.parquet`` anew from the cutout files on disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from hyrax.verbs.verb import Verb


class RebuildManifestVerb(Verb):
    name = "rebuild_manifest"
    summary = "Rebuild general.data_dir's download manifest from the cutout files on disk."

    def run(self, data_dir: str | Path | None = None) -> dict[str, int]:
        """{"done": whole files, "failed": unreadable ones} of ``data_dir`` (default general.data_dir).

        Use it after moving or deleting cutouts by hand; the next download fetches what is missing.
        """
        from hyrax.download import rebuild_manifest

        return rebuild_manifest(Path(data_dir or self.config["general"]["data_dir"]).expanduser())

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data-dir", help="the download directory (default: general.data_dir)")

    def run_cli(self, args: argparse.Namespace) -> int:
        data_dir = args.data_dir or self.config["general"]["data_dir"]
        counts = self.run(data_dir)
        print(
            f"{Path(data_dir) / 'manifest.parquet'} rebuilt: {counts['done']:,} cutouts done, "
            f"{counts['failed']:,} unreadable (the next hyrax download fetches those again)."
        )
        return 0
