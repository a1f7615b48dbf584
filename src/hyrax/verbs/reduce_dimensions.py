"""``reduce_dimensions``: a 2-D or 3-D map of the latent vectors (umap, pca or tsne)."""

from __future__ import annotations

import argparse
import warnings

from hyrax.verbs.verb import Verb


class ReduceDimensionsVerb(Verb):
    name = "reduce_dimensions"
    summary = "Map the latest inference results to 2-D/3-D (reduce_dimensions.name: umap, pca, tsne)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-r", "--results-dir", metavar="RUN_DIR", help="an infer run (default: the latest)"
        )

    def run(self, results_dir=None):
        """Return a ResultDataset of coordinates, one row per object of the inference results."""
        from hyrax.reduce.run import input_results, reduce_results
        from hyrax.results.store import ResultDataset

        results = input_results(self.config, results_dir)
        with self.create_run_dir() as run:
            reduce_results(self.config, results, run.path)
            import tomlkit

            from hyrax.results.run_dir import write_text_atomic

            source = {"infer_run": str(results.data_location.resolve())}
            write_text_atomic(run.path / "source.toml", tomlkit.dumps(source))
        return ResultDataset(self.config, run.path)

    def run_cli(self, args: argparse.Namespace) -> int:
        reduced = self.run(args.results_dir)
        print(f"{len(reduced)} objects mapped to {reduced.shape[0]}-D in {reduced.table_path}")
        return 0


class UmapVerb(ReduceDimensionsVerb):
    """The old name of reduce_dimensions."""

    name = "reduce_dimensions"
    summary = "Deprecated: use reduce_dimensions (this runs it, with reduce_dimensions.name as configured)."

    def run(self, results_dir=None):
        warnings.warn(
            'The `umap` verb is now `reduce_dimensions` (with reduce_dimensions.name = "umap").',
            FutureWarning,
            stacklevel=2,
        )
        return super().run(results_dir)
