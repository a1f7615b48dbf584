"""Fault points: named places inside Hyrax's writers where a test can make the process kill itself.

A writer calls ``fault_point("<name>")`` at a moment where a crash is dangerous (data written but not
committed, committed but the run's status not yet written, ...). Nothing happens unless the environment
variable ``HYRAX_FAULT`` names that point when Hyrax is imported::

    HYRAX_FAULT="results.fragment_written"      # killed at the first arrival
    HYRAX_FAULT="results.fragment_written:3"    # killed at the third arrival

At the chosen arrival the process sends itself SIGKILL: no ``finally``, no ``atexit``, no buffer
flushed, as when the machine loses power or the kernel's OOM killer strikes. ``<point>:<n>:stop`` sends
SIGSTOP instead: the process halts there, holding whatever it holds (its locks), until a SIGCONT, so that a
test can start a second writer at a known moment of the first. The variable is read once, at import; an
unset variable costs one string comparison per call.

Under torchrun every process inherits the same environment; ``HYRAX_FAULT_RANK=<r>`` arms the point in
the process whose ``RANK`` is ``r`` alone (the others run on, and torchrun then stops them)::

    HYRAX_FAULT="results.committed:2" HYRAX_FAULT_RANK=1 torchrun --nproc_per_node=2 -m hyrax infer

The points (``<writer>.<moment>``):

``results.fragment_written``
    The results table (``results/store.py``): a chunk's data files are written, its Lance commit is not.
    Under torchrun (``training/distributed_inference.py``): a process's chunk is written as data files,
    its manifest does not list them yet.
``results.committed``
    The results table: a chunk was just committed (the table has a new version); the next is not. Under
    torchrun: the process's manifest lists the chunk; the table is published only when every process is
    done.
``run.before_complete``
    Any verb's run directory (``results/run_dir.py``): the run's work is all written, its status still
    says ``running``.
``checkpoint.temporary_written``
    A training checkpoint (``training/checkpoints.py``): the temporary file is written, not yet renamed.
``train.epoch_checkpointed``
    Training (``training/loop.py``): an epoch's checkpoint (and best checkpoint) are saved, the next
    epoch has not started.
``derived_table.written``
    A table derived from a run's results and replaced whole (outlier scores, the ranking:
    ``results/store.py`` ``replace_table``): its data files are written, its commit is not.
``derived_table.committed``
    The derived table's new version is committed; the older versions' files are not yet removed.
``labels.fragment_written``
    The label book (``discovery/labels.py``): a label write's data file is written, not committed.
``vector_db.batch_inserted``
    save_to_database (``vector_db/connection.py``): a batch of vectors is in the index, the index is not
    marked complete (one arrival per batch of ``batch_size``; chromadb and qdrant: the lance backend
    indexes the results table in place and inserts nothing). At the last arrival every vector is in
    and the index still says unfinished: save_to_database has no run directory, so this is its moment
    before complete.
``vector_db.index_segment_written``
    save_to_database, lance backend above ``index_threshold`` (``vector_db/lance_index.py``): an IVF-PQ
    index segment's files are written, not committed (one arrival per segment).
``stream.batch_written``
    infer_stream (``stream/serve.py``): a batch's results (and skipped messages) are committed to the run's
    Lance tables, its Kafka offsets are not yet committed (one arrival per batch written).
``stream.offsets_committed``
    infer_stream: the offsets of a written batch were just committed to the broker; the next batch's are
    not (one arrival per batch committed).
``outliers.shard``
    Outlier scores on Dask workers (``vector_db/outlier_shards.py``): a worker has searched its shard
    (blocks of lists, or rows in the graph) and not yet returned it (one arrival per shard). The
    scheduler gives the shard to another worker; the scores are written once, by the scoring process.
``reduce.shard``
    reduce_dimensions on Dask workers (``reduce/shards.py``): a worker has placed its run of rows and
    not yet returned it (one arrival per shard). The shard is placed again by another worker; the map is
    written once, in row order, by the reducing process.
``manifest.merge_written``
    The download manifest (``download/manifest.py`` ``consolidate``, at a download's start and end): the
    merged manifest is written under its temporary name, not yet renamed over ``manifest.parquet``.
``manifest.merged``
    The download manifest: the merged manifest is renamed into place, the part files it holds are not
    yet removed (the next merge must not count them twice).
``atlas.tile_written``
    The atlas (``visualize/atlas_build.py``): a tile's image and cells are written (one arrival per
    tile); the summary that marks its bucket (or its parent tile) done is not. A rerun redoes that
    bucket, overwriting its tiles whole, and skips the finished ones.

>>> fault_point("results.committed")  # HYRAX_FAULT unset: nothing happens
"""

from __future__ import annotations

import os
import signal

#: The environment variable that names the point (and, after a colon, the arrival) to die at.
VARIABLE = "HYRAX_FAULT"
#: When set, only the process whose ``RANK`` (torchrun's) equals it is armed.
RANK_VARIABLE = "HYRAX_FAULT_RANK"


def _parse(spec: str) -> tuple[str | None, int, signal.Signals]:
    """``"<point>[:<n>[:stop]]"`` -> (point, n, the signal to send)."""
    name, _, rest = spec.strip().partition(":")
    nth, _, action = rest.partition(":")
    if not name:
        return None, 0, signal.SIGKILL
    try:
        arrival = int(nth) if nth else 1
    except ValueError:
        raise ValueError(f"{VARIABLE}={spec!r}: expected <point>[:<n>[:stop]], n a whole number.") from None
    if arrival < 1:
        raise ValueError(f"{VARIABLE}={spec!r}: the arrival n counts from 1.")
    if action not in ("", "stop"):
        raise ValueError(f"{VARIABLE}={spec!r}: the action after the arrival can only be 'stop'.")
    return name, arrival, signal.SIGSTOP if action else signal.SIGKILL


def _armed_here() -> bool:
    rank = os.environ.get(RANK_VARIABLE, "").strip()
    return not rank or rank == os.environ.get("RANK", "0").strip()


_TARGET, _ARRIVAL, _SIGNAL = _parse(os.environ.get(VARIABLE, "") if _armed_here() else "")
_arrivals = 0


def fault_point(name: str) -> None:
    """Kill (or stop) this process if ``HYRAX_FAULT`` names ``name`` and this is its chosen arrival."""
    if name != _TARGET:
        return
    global _arrivals
    _arrivals += 1
    if _arrivals == _ARRIVAL or (_arrivals > _ARRIVAL and _SIGNAL == signal.SIGKILL):
        os.kill(os.getpid(), _SIGNAL)
