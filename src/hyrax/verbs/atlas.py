"""``atlas``: a reduce_dimensions map tiled with its objects' images, a zoomable pyramid of tiles in the run
directory (:mod:`hyrax.visualize.atlas`), which ``hyrax visualize`` serves and a static export copies."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb, add_input_dir


class AtlasVerb(Verb):
    name = "atlas"
    summary = "Tile the latest reduce_dimensions map with its objects' images: a zoomable pyramid in <run>/atlas (resumable)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_input_dir(parser, what="a reduce_dimensions run")
        parser.add_argument(
            "--choose",
            metavar="COLUMN",
            help='the object each cell shows: "typical" (nearest its members\' centroid) or the top of a '
            "numeric column such as outlier_score (default: atlas.choose)",
        )
        parser.add_argument("--order", choices=("max", "min"), help="top by the largest or smallest value")
        parser.add_argument("--max-level", type=int, metavar="Z", help='deepest zoom level (default "auto")')

    def run(self, input_dir=None, choose=None, order=None, max_level=None, *, results_dir=None):
        """Build (or finish) the atlas of a reduce_dimensions run and return it
        (:class:`~hyrax.visualize.atlas.Atlas`); a complete atlas of the same map and settings is returned
        at once. ``input_dir`` (or ``results_dir``): the run (default: atlas.input_dir, else the latest);
        ``choose``, ``order``, ``max_level`` set atlas.choose, .order, .max_level for this call.

        >>> atlas = h.atlas()                                   # doctest: +SKIP
        >>> atlas.cells(0, 0, 0)["object_id"][:3]               # doctest: +SKIP
        """
        from hyrax.config import get_setting
        from hyrax.visualize.atlas_build import build_atlas
        from hyrax.visualize.view import require_reduce_run

        self.override(atlas__choose=choose, atlas__order=order, atlas__max_level=max_level)
        run = require_reduce_run(
            self.config, input_dir or results_dir or get_setting(self.config, "atlas.input_dir")
        )
        return build_atlas(self.config, run)

    def run_cli(self, args: argparse.Namespace) -> int:
        atlas = self.run(args.input_dir, args.choose, args.order, args.max_level)
        levels = atlas.manifest["levels"]
        print(
            f"atlas of {atlas.manifest['placed']:,} objects in {atlas.path}: levels 0..{atlas.max_level}, "
            f"{sum(level['tiles'] for level in levels):,} tiles"
        )
        return 0
