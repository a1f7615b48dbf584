"""``create_splits``: divide the objects among the data_request groups and save the split in a run."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb


class CreateSplitsVerb(Verb):
    name = "create_splits"
    summary = "Divide objects among the data_request groups ([split]) and save the split for reuse."

    def run(self):
        """The :class:`~hyrax.datasets.splits.Splits`, also saved in a new run directory."""
        from hyrax.datasets.provider import providers_for
        from hyrax.datasets.splits import compute_splits

        with self.create_run_dir() as run:
            splits = compute_splits(self.config, providers_for(self.config))
            splits.save(run.path)
        splits.run_dir = run.path
        return splits

    def run_cli(self, args: argparse.Namespace) -> int:
        splits = self.run()
        for group, indices in splits.indices.items():
            print(f"{group}: {len(indices)} objects")
        print(f"seed {splits.seed}; saved in {splits.run_dir}")
        return 0
