"""Shared fixtures: every test runs in its own empty working directory, so ./hyrax_config.toml and
./results never leak between tests or into the checkout."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def write_config(tmp_path):
    """write_config(text, name="config.toml") -> Path of a TOML file with the dedented text."""

    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """tests/data: the real data sets the tests use, in the repository (see each folder's README)."""
    if not REAL_DATA.is_dir():
        pytest.fail(f"The test data is missing: expected {REAL_DATA} (part of the repository).")
    return REAL_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def hyrax_config():
    """A fresh resolved config (defaults only), results under the test's directory."""
    from hyrax.config import ConfigManager

    manager = ConfigManager()
    return manager


def request_config(manager, group: str = "train", **datasets):
    """Set [data_request.<group>] from keyword tables and return the config."""
    for name, spec in datasets.items():
        manager.set_config(f"data_request.{group}.{name}", spec)
    return manager.config


def run_hyrax(*args, timeout: float = 120, cwd=None, env=None):
    """``python -m hyrax ARGS`` as a real subprocess (the command line exactly as a user types it)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hyrax", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def torchrun_hyrax(verb: str, config: Path, cwd: Path, processes: int = 2):
    """``torchrun --standalone --nproc_per_node=N -m hyrax VERB -c CONFIG`` as a real subprocess."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "hyrax",
        verb,
        "-c",
        str(config),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


def torchrun_command(*args, processes: int = 2) -> list[str]:
    """``torchrun --standalone --nproc_per_node=N -m hyrax ARGS`` as an argument list (for Popen, when a
    test must watch or kill the run)."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "hyrax",
        *map(str, args),
    ]


def wait_nodes(nodes, timeout: float) -> list:
    """The exit codes of launcher processes started in sessions of their own (None: still running at the
    deadline, then its process group SIGKILLed)."""
    import contextlib
    import os
    import signal
    import subprocess
    import time

    deadline = time.time() + timeout
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=max(0.1, deadline - time.time()))
    codes = [node.poll() for node in nodes]
    for node in nodes:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    return codes
