"""Run directories: ``<results_dir>/YYYYMMDD-HHMMSS-<verb>-<xxxx>/``, one per run of a verb.

Each holds ``runtime_config.toml`` (the full resolved config that made it) and ``hyrax_run.toml``, its
status: ``running`` while the verb works, then ``complete`` or ``failed``. Only a complete run is ever
found as "the latest" run of a verb, so an interrupted run is never taken for finished results.

>>> import tempfile
>>> from hyrax.config import ConfigManager
>>> config = ConfigManager().config
>>> config["general"]["results_dir"] = tempfile.mkdtemp()
>>> with RunDir.create(config, "train") as run:
...     _ = (run.path / "notes.txt").write_text("weights would go here")
>>> find_latest_run(config["general"]["results_dir"], "train") == run.path
True
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import secrets
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyrax.errors import ResultsError, RunBusyError
from hyrax.faults import fault_point

logger = logging.getLogger(__name__)

STATUS_FILE = "hyrax_run.toml"
#: Held (flock) by the one process writing a run; the kernel releases it when that process dies.
LOCK_FILE = ".hyrax_writer.lock"
CONFIG_FILE = "runtime_config.toml"
_NAME = re.compile(r"^(?P<stamp>\d{8}-\d{6})-(?P<verb>[A-Za-z0-9_-]+)-(?P<tag>[A-Za-z0-9]{4})$")

#: Verbs whose run directories are named as the published Hyrax names them (after the algorithm, or
#: "onnx"), so that its notebooks' find_most_recent_results_dir(config, "umap") finds ours. A verb's runs
#: are found under any of its names.
RUN_NAMES: dict[str, tuple[str, ...]] = {
    "reduce_dimensions": ("umap", "pca", "tsne", "reduce_dimensions"),
    "to_onnx": ("onnx", "to_onnx"),
}
_ALPHABET = string.ascii_lowercase + string.digits


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half of one."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, synced unless ``sync``
    is false, renamed: a killed process leaves the whole file or none either way)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_npz_atomic(path: Path, **arrays) -> None:
    """``np.savez`` to ``path``, atomically."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


class RunDir:
    """One run's directory. Use :meth:`create` as a context manager: the run is marked complete when
    the block finishes and failed (with the error) when it raises."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = None

    # -- one writer --------------------------------------------------------------------------------
    def lock(self, verb: str) -> RunDir:
        """Become this run's one writer: an exclusive OS lock (flock) on ``.hyrax_writer.lock``, released
        by the kernel when this process ends however it ends (kill -9 leaves no stale lock). Another
        writer is a RunBusyError naming the holder's pid and command."""
        from hyrax import locks

        if self._lock is None:
            try:
                self._lock = locks.take(self.path / LOCK_FILE, verb)
            except locks.Busy as busy:
                raise RunBusyError(
                    f"{self.path} is being written by {busy.holder}. One process writes a run at a time: wait "
                    f"for it to finish (or stop it), then run again."
                ) from None
        return self

    def writer_alive(self) -> bool:
        """True while a process holds this run's writer lock (it is being written now)."""
        from hyrax import locks

        return locks.alive(self.path / LOCK_FILE)

    def unlock(self) -> None:
        if self._lock is not None:
            from hyrax import locks

            locks.release(self._lock)
            self._lock = None

    @classmethod
    def create(cls, config: Mapping, verb: str, name: str | None = None) -> RunDir:
        """Make a new run directory for ``verb`` under ``general.results_dir`` and snapshot ``config``.

        ``name`` (one of the verb's :data:`RUN_NAMES`) names the directory instead of the verb."""
        results_dir = Path(config["general"]["results_dir"]).expanduser()
        started = _now()
        try:
            results_dir.mkdir(parents=True, exist_ok=True)
            while True:
                tag = "".join(secrets.choice(_ALPHABET) for _ in range(4))
                path = results_dir / f"{started:%Y%m%d-%H%M%S}-{name or verb}-{tag}"
                try:
                    path.mkdir()
                    break
                except FileExistsError:  # same second, same tag: draw again
                    continue
        except OSError as error:
            raise ResultsError(
                f"Cannot create a run directory in general.results_dir = '{results_dir}': {error.strerror}. "
                f"Point results_dir at a writable directory."
            ) from None
        run = cls(path).lock(verb)
        run.write_config(config)
        run._write_status({"verb": verb, "status": "running", "started": started.isoformat()})
        logger.info("%s run directory: %s", verb, path)
        return run

    # -- status ----------------------------------------------------------------------------------
    @property
    def status(self) -> dict[str, Any]:
        """The contents of ``hyrax_run.toml`` (empty if there is none)."""
        try:
            with open(self.path / STATUS_FILE, "rb") as handle:
                return tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError):
            return {}

    @property
    def is_complete(self) -> bool:
        return self.status.get("status") == "complete"

    def _write_status(self, status: Mapping[str, Any]) -> None:
        import tomlkit

        from hyrax import __version__

        if self.is_complete and status.get("status") != "complete":
            raise ResultsError(
                f"{self.path} is complete; a finished run's status does not change (tried: {status.get('status')})."
            )
        write_text_atomic(self.path / STATUS_FILE, tomlkit.dumps({**status, "hyrax_version": __version__}))

    def mark_running(self) -> None:
        """Mark a resumed run as running again (it stops counting as complete until it finishes)."""
        self._write_status({**self.status, "status": "running", "resumed": _now().isoformat()})

    def mark_complete(self, **summary: Any) -> None:
        """Mark the run complete, recording ``summary`` (e.g. results=..., skipped=...) in its status; the
        writer's lock is released."""
        try:
            fault_point("run.before_complete")
            self._write_status(
                {**self.status, **summary, "status": "complete", "finished": _now().isoformat()}
            )
        finally:
            self.unlock()

    def mark_stopped(self, **summary: Any) -> None:
        """Mark a stream run stopped (it can be resumed: a stream has no end); the writer's lock is released."""
        try:
            self._write_status({**self.status, **summary, "status": "stopped", "stopped": _now().isoformat()})
        finally:
            self.unlock()

    def mark_failed(self, reason: str) -> None:
        try:
            if not self.is_complete:  # a finished run stays complete
                self._write_status(
                    {**self.status, "status": "failed", "finished": _now().isoformat(), "error": reason}
                )
        finally:
            self.unlock()

    def write_config(self, config: Mapping) -> None:
        """Write the full resolved config as ``runtime_config.toml``, secrets masked
        (:mod:`hyrax.config.secrets`): give credentials with a file or the environment, not the config."""
        import tomlkit

        from hyrax.config import to_plain
        from hyrax.config.secrets import masked

        plain = masked(to_plain(config))
        header = (
            "# The full configuration this run used. Re-run it with:  hyrax <verb> -c runtime_config.toml\n"
        )
        write_text_atomic(self.path / CONFIG_FILE, header + tomlkit.dumps(plain))

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.mark_complete()
        else:
            self.mark_failed(f"{kind.__name__}: {error}")

    def __repr__(self) -> str:
        return f"RunDir('{self.path}')"


def runs_of(results_dir: str | Path, verb: str, complete_only: bool = True) -> list[RunDir]:
    """Run directories of ``verb`` under ``results_dir``, oldest first."""
    results_dir = Path(results_dir).expanduser()
    if not results_dir.is_dir():
        return []
    runs = []
    names = RUN_NAMES.get(verb, (verb,))
    for child in results_dir.iterdir():
        match = _NAME.match(child.name)
        if match and match.group("verb") in names and child.is_dir():
            run = RunDir(child)
            status = run.status
            if complete_only and status.get("status") != "complete":
                continue
            runs.append((status.get("started", match.group("stamp")), child.name, run))
    return [run for *_, run in sorted(runs, key=lambda item: (item[0], item[1]))]


def find_latest_run(results_dir: str | Path, verb: str) -> Path | None:
    """The most recent *complete* run directory of ``verb``, or None."""
    runs = runs_of(results_dir, verb)
    return runs[-1].path if runs else None


def resolve_run(config: Mapping, verb: str, explicit: str | Path | None = None) -> Path:
    """The run directory a verb should read: ``explicit``, else (for infer) ``[results] inference_dir``,
    else the latest complete run of ``verb``. Raises ResultsError saying what to run or set."""
    from hyrax.config import get_setting

    if explicit is None and verb == "infer":
        explicit = get_setting(config, "results.inference_dir")
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise ResultsError(f"Run directory '{explicit}' does not exist.")
        run = RunDir(path)
        if (path / STATUS_FILE).exists() and not run.is_complete:
            raise ResultsError(
                f"Run directory '{explicit}' is {run.status.get('status', 'unfinished')}, not complete: "
                f"resume or re-run its verb before using its results."
            )
        return path
    results_dir = config["general"]["results_dir"]
    latest = find_latest_run(results_dir, verb)
    if latest is None:
        raise ResultsError(
            f"No complete '{verb}' run found in general.results_dir = '{results_dir}'. Run `hyrax {verb}` "
            f"(or h.{verb}()) first, or give the run directory explicitly."
        )
    return latest
