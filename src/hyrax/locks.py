"""One writer at a time: exclusive OS locks (flock) on a file, for run directories, download folders,
outlier scores and vector indexes.

The kernel releases a flock when its process ends, however it ends, so kill -9 never leaves a stale
lock. The lock file holds the holder's pid and command, for the message another writer gets. A forked
child (a DataLoader worker) closes its copies of the locks, so that a lock goes with its writer: a worker
outliving a killed writer does not keep the directory locked.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "demo.lock"
>>> with exclusive(path, "demo", lambda holder: RuntimeError(f"busy: {holder}")):
...     alive(path)
True
>>> alive(path)
False
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

#: Locks this process holds (closed in forked children).
_HELD: set = set()


def _close_inherited_locks() -> None:
    for handle in list(_HELD):
        with contextlib.suppress(OSError):
            handle.close()  # this child's reference only: the parent keeps its lock
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class Busy(Exception):
    """The lock is held by another process, described in ``holder``."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def take(path: Path, verb: str, wait: Callable[[str], contextlib.AbstractContextManager] | None = None) -> IO:
    """Hold an exclusive lock on ``path`` (created if needed) and return its open file; release it with
    :func:`release`. When another process holds it: raise :class:`Busy`, or with ``wait``, block inside
    ``wait(holder)`` (a context manager, e.g. a "waiting for ..." message) until it is free."""
    import fcntl

    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            if wait is None:
                raise Busy(holder) from None
            with wait(holder):
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]
    since = datetime.datetime.now().astimezone()
    handle.write(f"pid {os.getpid()} ({verb}: {command or 'python'}), since {since:%Y-%m-%d %H:%M:%S}\n")
    handle.flush()
    _HELD.add(handle)
    return handle


def _holder(handle: IO) -> str:
    """The holder's description; it writes it just after taking the lock, so an empty file is given a
    moment to fill."""
    import time

    for _ in range(50):
        handle.seek(0)
        holder = handle.read().strip()
        if holder:
            return holder
        time.sleep(0.01)
    return "another process"


def release(handle: IO) -> None:
    import fcntl

    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    _HELD.discard(handle)
    handle.close()


def alive(path: Path) -> bool:
    """True while a process holds the lock on ``path``."""
    import fcntl

    if not Path(path).is_file():
        return False
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def exclusive(
    path: Path,
    verb: str,
    refuse: Callable[[str], Exception],
    wait: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> Iterator[None]:
    """Hold the lock on ``path`` for the block. A held lock raises ``refuse(holder)``, or with ``wait``
    waits (see :func:`take`)."""
    try:
        handle = take(Path(path), verb, wait)
    except Busy as busy:
        raise refuse(busy.holder) from None
    try:
        yield
    finally:
        release(handle)
