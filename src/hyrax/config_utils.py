"""Names the published Hyrax's notebooks import from ``hyrax.config_utils``, kept so that they run
unchanged. New code: ``hyrax.config.ConfigManager`` and ``hyrax.results.run_dir.find_latest_run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hyrax.config.manager import ConfigManager

__all__ = ["ConfigManager", "find_most_recent_results_dir"]

#: The published Hyrax's "vector-db" runs: here an index lives in (or names) its infer run, which
#: ``database_connection(database_dir=...)`` opens. (Reduce runs are named "umap"/"pca"/"tsne" and
#: ONNX exports "onnx" here too, so those names need no translation.)
_RUN_NAMES = {"vector-db": "infer"}
DONE = ("complete", "stopped")


def find_most_recent_results_dir(config: Mapping, verb: str) -> Path | None:
    """The most recent complete run directory of ``verb`` under ``general.results_dir``, or None (the
    published Hyrax's names of runs, "umap", "onnx" and "vector-db", find ours)."""
    from hyrax.results.run_dir import find_latest_run, runs_of

    results_dir, verb = Path(config["general"]["results_dir"]).expanduser(), _RUN_NAMES.get(verb, verb)
    if verb in ("train_stream", "infer_stream"):
        # A streamed run ends "stopped" (its session closed, resumable), not "complete": the published
        # notebooks read the weights of the train_stream run just made (tess_lsdb_stream_example).
        runs = [r for r in runs_of(results_dir, verb, complete_only=False) if r.status.get("status") in DONE]
        return runs[-1].path if runs else None
    return find_latest_run(results_dir, verb)
