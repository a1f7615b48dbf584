"""``reduce_dimensions``: a 2-D or 3-D map of the latent vectors (umap, pca or tsne)."""

from __future__ import annotations

import argparse
import warnings

from hyrax.verbs.verb import Verb, add_input_dir

#: Algorithms whose runs are named after them (``<stamp>-umap-<tag>``), as the published Hyrax names them.
_NAMED_RUNS = ("umap", "pca", "tsne")


class ReduceDimensionsVerb(Verb):
    name = "reduce_dimensions"
    summary = "Map the latest inference results to 2-D/3-D (reduce_dimensions.name: umap, pca, tsne)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-a", "--algorithm", help="umap, pca or tsne (default: reduce_dimensions.name)")
        add_input_dir(parser)
        parser.add_argument("-m", "--model-path", help="a fitted reducer saved by an earlier run, to reuse")

    def run(self, algorithm=None, input_dir=None, model_path=None, *, results_dir=None):
        """Return a ResultDataset of coordinates, one row per object of the inference results.

        ``algorithm`` and ``model_path`` set reduce_dimensions.name and .model_path for this call;
        ``input_dir`` (or ``results_dir``) is the infer run to reduce (default: the latest).
        """
        from hyrax.reduce.run import input_results, reduce_results
        from hyrax.results.store import ResultDataset

        self.override(reduce_dimensions__name=algorithm, reduce_dimensions__model_path=model_path)
        results = input_results(self.config, input_dir or results_dir)
        name = self.config["reduce_dimensions"]["name"]
        with self.create_run_dir(name if name in _NAMED_RUNS else None) as run:
            reduce_results(self.config, results, run.path)
            import tomlkit

            from hyrax.results.run_dir import write_text_atomic

            source = {  # what the map was made from (the map's checks and the outlier colours use it)
                "infer_run": str(results.data_location.resolve()),
                "results_rows": len(results),
                "results_version": results.version,
            }
            write_text_atomic(run.path / "source.toml", tomlkit.dumps(source))
        return ResultDataset(self.config, run.path)

    def run_cli(self, args: argparse.Namespace) -> int:
        reduced = self.run(args.algorithm, args.input_dir, args.model_path)
        print(f"{len(reduced)} objects mapped to {reduced.shape[0]}-D in {reduced.table_path}")
        return 0


class UmapVerb(ReduceDimensionsVerb):
    """The old name of reduce_dimensions, with algorithm "umap" (as in the published Hyrax)."""

    name = "reduce_dimensions"
    summary = "Deprecated: use reduce_dimensions (this runs it with algorithm umap)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_input_dir(parser)
        parser.add_argument("-m", "--model-path", help="a fitted UMAP saved by an earlier run, to reuse")

    def run(self, input_dir=None, model_path=None, *, results_dir=None):
        """``reduce_dimensions(algorithm="umap", ...)``, with a FutureWarning naming it."""
        warnings.warn(
            'The `umap` verb is now `reduce_dimensions` (h.reduce_dimensions(algorithm="umap")).',
            FutureWarning,
            stacklevel=2,
        )
        return super().run("umap", input_dir, model_path, results_dir=results_dir)

    def run_cli(self, args: argparse.Namespace) -> int:
        reduced = self.run(args.input_dir, args.model_path)
        print(f"{len(reduced)} objects mapped to {reduced.shape[0]}-D in {reduced.table_path}")
        return 0
