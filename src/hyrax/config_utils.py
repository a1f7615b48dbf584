"""Names the published Hyrax's notebooks import from ``hyrax.config_utils``, kept so that they run
unchanged. New code: ``hyrax.config.ConfigManager`` and ``hyrax.results.run_dir.find_latest_run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hyrax.config.manager import ConfigManager

__all__ = ["ConfigManager", "find_most_recent_results_dir"]

#: The published Hyrax's run-directory verbs that are named after a verb of ours.
_RUN_NAMES = {"umap": "reduce_dimensions", "onnx": "to_onnx", "vector-db": "save_to_database"}


def find_most_recent_results_dir(config: Mapping, verb: str) -> Path | None:
    """The most recent complete run directory of ``verb`` under ``general.results_dir``, or None (the
    published Hyrax's names of runs, "umap", "onnx" and "vector-db", find ours)."""
    from hyrax.results.run_dir import find_latest_run

    return find_latest_run(Path(config["general"]["results_dir"]).expanduser(), _RUN_NAMES.get(verb, verb))
