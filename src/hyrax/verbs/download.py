"""``download``: fetch the HSC or Rubin (SODA) cutouts of a catalog into ``general.data_dir`` (resumable)."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb


class DownloadVerb(Verb):
    name = "download"
    summary = "Download HSC or Rubin cutouts of the objects in download.fits_file into general.data_dir (resumable)."

    def run(self):
        """Download; return a :class:`~hyrax.download.report.DownloadSummary` (``.ok``, counts, reasons).

        The run directory holds the config (without credentials) and ``download_summary.toml``.
        """
        import tomlkit

        from hyrax.download.downloader import CutoutDownloader
        from hyrax.results.run_dir import write_text_atomic

        downloader = CutoutDownloader.from_config(self.config)  # every config and catalog error first
        with self.create_run_dir() as run:
            summary = downloader.run()
            summary.run_dir = run.path
            write_text_atomic(run.path / "download_summary.toml", tomlkit.dumps(summary.as_dict()))
        return summary

    def run_cli(self, args: argparse.Namespace) -> int:
        summary = self.run()
        print(summary)
        return 0 if summary.ok else 1
