"""``save_to_database``, ``database_connection`` and ``outliers``: the latent-space tools."""

from __future__ import annotations

import argparse

from hyrax.verbs.verb import Verb, add_input_dir, deprecated_option


class SaveToDatabaseVerb(Verb):
    name = "save_to_database"
    summary = (
        "Index the latest inference results for similarity search (vector_db.name: lance, chromadb, qdrant)."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_input_dir(parser)
        parser.add_argument(
            "-o",
            "--output-dir",
            metavar="DIR",
            help="where the index goes (default: vector_db.vector_db_dir, else inside the infer run)",
        )

    def run(self, input_dir=None, output_dir=None, *, results_dir=None):
        """Build (or complete) the index; return a DatabaseConnection to it.

        ``input_dir`` (or ``results_dir``): the infer run to index (default: the latest);
        ``output_dir``: the index's directory (vector_db.vector_db_dir), which
        ``database_connection(database_dir=...)`` then opens."""
        from hyrax.vector_db.connection import DatabaseConnection, save_to_database

        self.override(vector_db__vector_db_dir=output_dir)
        index, done = save_to_database(self.config, input_dir or results_dir)
        self.message = f"{index.backend}: {done}, {index.count()} objects, in {index.directory}"
        return DatabaseConnection(self.config, input_dir or results_dir)

    def run_cli(self, args: argparse.Namespace) -> int:
        self.run(args.input_dir, args.output_dir)
        print(self.message)
        return 0


class DatabaseConnectionVerb(Verb):
    name = "database_connection"
    summary = "Search the vector index: nearest neighbours of an object id (--id ID -k 10)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--id", required=True, help="the object whose neighbours to find")
        parser.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
        parser.add_argument(
            "-d",
            "--database-dir",
            metavar="DIR",
            help="an index directory (save_to_database -o) or an indexed infer run; default: the latest",
        )
        parser.add_argument("-i", "--input-dir", metavar="RUN_DIR", help="an indexed infer run")
        parser.add_argument(
            "-r",
            "--results-dir",
            dest="database_dir",
            action=deprecated_option("-d/--database-dir (an index) or -i/--input-dir (an infer run)"),
            help=argparse.SUPPRESS,
        )

    def run(self, database_dir=None, *, results_dir=None, input_dir=None):
        """A DatabaseConnection: get_by_id, search_by_id, search_by_vector, search_by_image.

        ``database_dir``: an indexed infer run, or the directory that ``save_to_database(output_dir=...)``
        wrote; ``input_dir`` (or ``results_dir``): an indexed infer run (default: the latest infer run, with
        vector_db.vector_db_dir if set)."""
        from hyrax.vector_db.connection import DatabaseConnection, index_directory_settings

        explicit = database_dir or input_dir or results_dir
        if explicit is not None:
            settings = index_directory_settings(explicit)
            if settings is not None:  # an index directory: it names its infer run and backend
                self.override(vector_db__name=settings["backend"], vector_db__vector_db_dir=str(explicit))
                explicit = settings["infer_run"]
        return DatabaseConnection(self.config, explicit)

    def run_cli(self, args: argparse.Namespace) -> int:
        found = self.run(args.database_dir, input_dir=args.input_dir).search_by_id(args.id, args.k)
        ids, distances = found[str(args.id)], found.distances[str(args.id)]
        for rank, (object_id, distance) in enumerate(zip(ids, distances, strict=True), start=1):
            print(f"{rank:>3}  {object_id}  {distance:.5g}")
        return 0


class OutliersVerb(Verb):
    name = "outliers"
    summary = (
        "Score every object's unusualness (k-th neighbour distance) and list the most unusual with metadata."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--top", type=int, default=10, help="how many to list (default 10)")
        add_input_dir(parser)

    def run(self, top: int | None = None, results_dir=None, *, input_dir=None):
        """A DataFrame of objects, most unusual first: rank, object_id, outlier_score and their metadata.
        ``input_dir`` (or ``results_dir``): the infer run (default: the latest)."""
        from hyrax.vector_db.connection import results_run
        from hyrax.vector_db.outliers import ranked

        run = results_run(self.config, input_dir or results_dir)
        score_outliers(self.config, run)
        return _with_metadata(ranked(run, top), run)

    def run_cli(self, args: argparse.Namespace) -> int:
        import pandas as pd

        with pd.option_context("display.width", 160, "display.max_columns", 12):
            print(self.run(args.top, input_dir=args.input_dir).to_string(index=False))
        return 0


def score_outliers(config, run) -> int:
    """Score the run's outliers with the [outliers] settings (reused when up to date)."""
    from hyrax.vector_db.outliers import score_run

    settings = config["outliers"]
    return score_run(
        run,
        settings["method"],
        int(settings["k"]),
        seed=int(config["data_set"]["seed"] or 0),
        nlist=None if settings["nlist"] is False else int(settings["nlist"]),
        nprobe=None if settings["nprobe"] is False else int(settings["nprobe"]),
        config=config,
        time_budget=_budget_seconds(settings.get("time_budget_minutes", False)),
    )


def _budget_seconds(minutes) -> float | None:
    from hyrax.errors import ConfigError

    if minutes is False:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
        raise ConfigError(
            f"outliers.time_budget_minutes must be a number of minutes > 0, or false (no limit); got {minutes!r}."
        )
    return 60.0 * minutes


def _with_metadata(frame, run):
    """Add the infer group's metadata columns to the ranking (when it has any). Each object is found in
    the dataset through its results row (for an infer run, results row r is normally dataset row r: one
    id read confirms it), so no index over every id is built."""
    import numpy as np

    from hyrax.visualize.source import infer_provider_of

    provider = infer_provider_of(run)
    if provider is None:  # metadata is a courtesy: the ranking stands without it
        return frame
    rows = provider.rows_of(frame["object_id"].to_numpy(), hints=frame["row"].to_numpy())
    missing = rows < 0
    for name, values in provider.metadata_rows(np.maximum(rows, 0)).items():
        if missing.any() and values.dtype.kind in "iuf":  # no metadata rather than another object's
            values = np.where(missing, np.nan, values)
        elif missing.any():
            values = values.astype(object)
            values[missing] = None
        frame[name if name not in frame.columns else f"metadata.{name}"] = values
    return frame
