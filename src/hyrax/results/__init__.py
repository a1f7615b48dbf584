"""Results: run directories now; the streaming results table comes with inference."""

from hyrax.results.run_dir import RunDir, find_latest_run, resolve_run, runs_of

__all__ = ["RunDir", "find_latest_run", "resolve_run", "runs_of"]
