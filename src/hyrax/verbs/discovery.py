"""The discovery loop's verbs: ``label`` and ``labels`` (what the scientist said, by object id),
``rank`` (every object by relevance learnt from the labels x outlier score) and ``suggest`` (what to
label next). See :mod:`hyrax.discovery.rank` for the rule."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hyrax.verbs.verb import Verb, add_input_dir


def _book(config):
    from hyrax.discovery.labels import LabelBook, labels_path

    return LabelBook(labels_path(config))


def _infer_run(config, explicit=None, required: bool = True):
    from hyrax.config import get_setting
    from hyrax.errors import ResultsError
    from hyrax.results.run_dir import resolve_run

    try:
        return resolve_run(config, "infer", explicit or get_setting(config, "rank.input_dir"))
    except ResultsError:
        if required:
            raise
        return None


class LabelVerb(Verb):
    name = "label"
    summary = "Label objects (1 interesting, 0 not, a tag) or import the map's labels CSV."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("ids", nargs="*", help="object ids (or one labels CSV saved by the map)")
        parser.add_argument(
            "--value",
            help="1 = interesting (the default without --tag), 0 = not, '' = a tag alone (the default with --tag)",
        )
        parser.add_argument("--tag", help="a free-text tag, such as ring")
        parser.add_argument("--user", help="who labels (default: the login name)")
        parser.add_argument(
            "--allow-unknown", action="store_true", help="keep ids that are not in the infer run"
        )

    def run(
        self, object_ids=None, value=..., tag: str | None = None, *, user=None, allow_unknown=False
    ) -> int:
        """Append labels; returns how many. ``object_ids``: ids (a list, an array, a DataFrame with an
        object_id column such as ``view.selected()``) or the path of a labels CSV (object_id, label, tag)
        saved by the map. ``value``: 1 interesting (the default without a tag), 0 not, None with a tag
        (a tag alone: the default when a tag is given). Ids must be objects of the latest infer run unless
        ``allow_unknown``."""
        if value is ...:
            value = None if tag else 1
        from hyrax.discovery.labels import read_csv_labels
        from hyrax.errors import DataError

        book = _book(self.config)
        if isinstance(object_ids, str | Path) and str(object_ids).lower().endswith(".csv"):
            frame = read_csv_labels(object_ids)
            for column in ("label", "tag"):
                if column not in frame.columns:
                    frame[column] = ""
            self._check(frame["object_id"].to_numpy(str), allow_unknown)  # every id, before any is written
            written = 0
            for (label, found_tag), group in frame.groupby(["label", "tag"], sort=False):
                written += book.add(group["object_id"].to_numpy(str), label, found_tag or None, user, "csv")
            return written
        if object_ids is None:
            raise DataError("h.label(ids, 1): give the object ids to label (or a labels CSV's path).")
        if hasattr(object_ids, "columns"):  # a DataFrame, e.g. view.selected()
            object_ids = object_ids["object_id"]
        if isinstance(object_ids, str):
            object_ids = [object_ids]
        ids = np.asarray(list(object_ids) if not hasattr(object_ids, "__array__") else object_ids).astype(str)
        run = self._check(ids, allow_unknown)
        return book.add(ids, value, tag, user, run)

    def _check(self, ids: np.ndarray, allow_unknown: bool):
        """The infer run the ids were checked against (None when there is none yet)."""
        from hyrax.errors import DataError
        from hyrax.results.store import ResultDataset

        run = _infer_run(self.config, required=False)
        if run is None or allow_unknown or not len(ids):
            return run
        rows = ResultDataset(data_location=run).rows_of(ids)
        unknown = ids[rows < 0]
        if len(unknown):
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise DataError(
                f"{len(unknown)} of {len(ids)} ids are not objects of the infer run {run}: {shown}. Check the "
                f"ids (h.labels() lists those labelled so far), or pass allow_unknown=True "
                f"(--allow-unknown) to keep them."
            )
        return run

    def run_cli(self, args: argparse.Namespace) -> int:
        ids = args.ids
        target = ids[0] if len(ids) == 1 and ids[0].lower().endswith(".csv") else ids
        value = ... if args.value is None else args.value
        count = self.run(target, value, args.tag, user=args.user, allow_unknown=args.allow_unknown)
        print(f"labelled {count} object(s)")
        return 0


class LabelsVerb(Verb):
    name = "labels"
    summary = "List the labels given so far (the latest per object; --history: every one)."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--history", action="store_true", help="every labelling, oldest first")

    def run(self, history: bool = False):
        """A DataFrame: the latest label (1/0/<NA>), tag, time, user of each labelled object (history=True:
        every labelling, oldest first)."""
        book = _book(self.config)
        return book.history() if history else book.latest()

    def run_cli(self, args: argparse.Namespace) -> int:
        frame = self.run(args.history)
        print(frame.to_string(index=False) if len(frame) else "no labels yet (hyrax label ID... --value 1)")
        return 0


class RankVerb(Verb):
    name = "rank"
    summary = "Rank every object by relevance learnt from the labels x outlier score; list the top."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--top", type=int, default=20, help="how many to list (default 20)")
        add_input_dir(parser)

    def run(self, top: int = 50, input_dir=None):
        """The ``top`` objects by combined score (relevance x outlier quantile), as a DataFrame: rank,
        object_id, combined, relevance, uncertainty, outlier_score, label, row and their metadata."""
        run, latest = ranked_run(self.config, input_dir)
        return ranked_frame(run, latest, top)

    def run_cli(self, args: argparse.Namespace) -> int:
        _print(self.run(args.top, args.input_dir))
        return 0


class SuggestVerb(Verb):
    name = "suggest"
    summary = "List the unlabelled objects whose labels would teach the ranking the most."

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-n", type=int, default=10, help="how many (default 10)")
        add_input_dir(parser)

    def run(self, n: int = 10, input_dir=None):
        """``n`` unlabelled objects to label next, as a DataFrame: object_id, acquisition, suggested_for,
        then as :meth:`RankVerb.run`'s. ``rank.cover`` of them are typical objects far from every label
        (``suggested_for`` "coverage": one of each kind the labels do not cover yet), the rest those of
        highest acquisition ((relevance + explore x uncertainty) x outlier factor: "acquisition")."""
        run, latest = ranked_run(self.config, input_dir)
        return suggested_frame(run, latest, n)

    def run_cli(self, args: argparse.Namespace) -> int:
        _print(self.run(args.n, args.input_dir))
        return 0


def ranked_run(config, input_dir=None):
    """The infer run, scored for outliers and ranked from the labels (both reused when up to date), and the
    latest labels (read once for everything that follows)."""
    from hyrax.discovery.rank import RankSettings, update_ranking
    from hyrax.verbs.vector_db_verbs import score_outliers

    run = _infer_run(config, input_dir)
    book = _book(config)
    score_outliers(config, run)
    update_ranking(run, book, RankSettings.from_config(config))
    return run, book.latest()


def ranked_frame(run, latest, top: int):
    """The ``top`` of a ranked run (see :meth:`RankVerb.run`); ``latest``: the labels, as h.labels()."""
    from hyrax.discovery.rank import top_rows

    rows, _ = top_rows(run, "combined", int(top))
    frame = _frame(run, rows, latest)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def suggested_frame(run, latest, n: int):
    """The ``n`` suggestions of a ranked run (see :meth:`SuggestVerb.run`): labelled objects left out;
    ``rank.cover`` of them (as the ranking was made) by coverage, the rest by acquisition."""
    from hyrax.discovery.rank import ranking_metadata, read_ranking, top_rows
    from hyrax.results.store import ResultDataset

    labelled = latest["object_id"].to_numpy(str)
    rows = ResultDataset(data_location=run).rows_of(labelled) if len(labelled) else np.empty(0, np.int64)
    exclude = np.unique(rows[rows >= 0])
    covering = round(int(n) * float((ranking_metadata(run) or {}).get("setting_cover", 0)))
    spread = np.empty(0, np.int64)
    if covering:
        spread, values = top_rows(run, "coverage", covering, exclude=exclude)
        spread = spread[values > 0]
    found, _ = top_rows(run, "acquisition", int(n) - len(spread), exclude=np.union1d(exclude, spread))
    chosen = np.concatenate([found, spread]).astype(np.int64)
    frame = _frame(run, chosen, latest)
    frame.insert(1, "acquisition", read_ranking(run, chosen)["acquisition"])
    frame.insert(2, "suggested_for", ["acquisition"] * len(found) + ["coverage"] * len(spread))
    return frame


def _frame(run, rows, latest):
    import pandas as pd

    from hyrax.discovery.rank import read_ranking
    from hyrax.vector_db.outliers import read_scores
    from hyrax.verbs.vector_db_verbs import _with_metadata

    found = read_ranking(run, rows)
    frame = pd.DataFrame(
        {
            "object_id": found["object_id"],
            "combined": found["combined"],
            "relevance": found["relevance"],
            "uncertainty": found["uncertainty"],
            "outlier_score": read_scores(run, rows),
        }
    )
    labels = latest.set_index("object_id")["label"]
    frame["label"] = frame["object_id"].map(labels).astype("Int8") if len(labels) else pd.NA
    frame["row"] = np.asarray(rows, dtype=np.int64)
    return _with_metadata(frame, run)


def _print(frame) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 12):
        print(frame.to_string(index=False))
