"""Inference under torchrun: each process commits its share as it goes; rank 0 publishes them all.

Each process takes a contiguous share of the objects (:func:`~hyrax.training.inference.shard`) and
writes it as Lance data files beside the results table, listing what it committed in its own manifest
(``<run>/lance_db/parts/rank-<r>.json``, rewritten atomically after every chunk). A process killed at
any moment loses at most its last chunk: ``torchrun --nproc_per_node=N -m hyrax infer --resume RUN``
(with the same N) continues each share after its last committed object. When every process is done,
rank 0 publishes all parts in one commit, in dataset order, compacts the table, deletes files that no
version uses (chunks of killed processes), indexes the ids and removes the manifests; each step can be
redone, so a crash during the finish is resumed too. An ``infer_batch`` that returns a dict gets one
column per key, as in one process.
"""

from __future__ import annotations

import json
import logging
import os
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.datasets.loader import Skips, loader_from_config
from hyrax.datasets.provider import DataProvider
from hyrax.errors import ResultsError
from hyrax.faults import fault_point
from hyrax.progress import Progress
from hyrax.results.store import CHUNK_BYTES, CHUNK_ROWS, Columns, columns_schema, table_path
from hyrax.training.distributed import broadcast_object
from hyrax.training.inference import (
    SKIPPED_FILE,
    STATS_FILE,
    InferSummary,
    RowSampler,
    _position_after,
    check_unique_ids,
    predict_batches,
    record_stats,
    shard,
)

logger = logging.getLogger(__name__)

#: ``<run>/lance_db/parts``: the plan and each process's manifest while a distributed run is unfinished.
PARTS_DIRECTORY = "parts"
PLAN_FILE = "plan.json"


def parts_path(run_dir: Path) -> Path:
    return table_path(run_dir).parent / PARTS_DIRECTORY


def _columns(shape, dtype) -> Columns:
    """ResultWriter's (shape, dtype) arguments, or a plan's: one array's, or dicts of them (per key)."""
    shapes = shape if isinstance(shape, dict) else {"data": shape}
    return {
        str(key): (tuple(int(s) for s in value), np.dtype(dtype[key] if isinstance(dtype, dict) else dtype))
        for key, value in shapes.items()
    }


def _plan_layout(shape, dtype) -> tuple[Any, Any]:
    """(shape, dtype) as the plan records them (JSON): lists and a dtype name, or dicts of them per key."""
    if isinstance(shape, dict):
        return {k: list(s) for k, (s, _) in _columns(shape, dtype).items()}, {
            k: str(d) for k, (_, d) in _columns(shape, dtype).items()
        }
    return list(shape), str(np.dtype(dtype))


def _row_bytes(columns: Columns) -> int:
    return max(1, sum(int(np.prod(shape or (1,))) * dtype.itemsize for shape, dtype in columns.values()))


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _published(run_dir: Path) -> bool:
    """True when a distributed run's table was published (its stats are written before its parts go)."""
    from hyrax.results.store import _has_versions

    return _has_versions(table_path(run_dir)) and (run_dir / STATS_FILE).is_file()


def check_processes(run_dir: Path, world_size: int) -> None:
    """Refuse to resume a run with another number of processes than it was started with: each process
    continues its own share of the objects."""
    from hyrax.results.store import _has_versions

    plan = _read_json(parts_path(run_dir) / PLAN_FILE)
    if plan is not None and plan["world_size"] != world_size:
        started = plan["world_size"]
        raise ResultsError(
            f"--resume {run_dir}: this inference run was started by {started} processes, each writing its own "
            f"share of the objects; this resume has {world_size}. Resume it with {started} processes: `torchrun "
            f"--nproc_per_node={started} -m hyrax infer --resume {run_dir}`."
        )
    if plan is None and world_size > 1 and _has_versions(table_path(run_dir)) and not _published(run_dir):
        raise ResultsError(
            f"--resume {run_dir}: this inference run was started in a single process; resume it the same way, "
            f"without torchrun: `hyrax infer --resume {run_dir}`."
        )


class PartWriter:
    """One process's share of a distributed inference, committed as it goes. Each chunk (ResultWriter's
    size rule) becomes Lance fragments in the results table's folder, not yet part of the table; then
    the process's manifest ``parts/rank-<r>.json`` (those fragments, rows written, the last object id)
    is rewritten atomically. What a manifest lists survives a kill; data files written after it are
    orphans, deleted when the table is published."""

    def __init__(self, run_dir: Path, rank: int, shape, dtype, commit_seconds: float):
        self.table = table_path(run_dir)
        self.manifest = parts_path(run_dir) / f"rank-{rank}.json"
        self.skips_path = parts_path(run_dir) / f"skipped-rank-{rank}.csv"
        self.named = isinstance(shape, dict)  # an infer_batch that returns a dict: a column per key
        self.columns = _columns(shape, dtype)
        self.schema = columns_schema(self.columns)
        self.chunk_rows = max(1024, min(CHUNK_ROWS, CHUNK_BYTES // _row_bytes(self.columns)))
        self.commit_seconds = float(commit_seconds)
        self.state = _read_json(self.manifest) or dict(
            rank=rank, fragments=[], rows=0, last_object_id=None, skipped=0, done=False
        )
        self._ids: list[np.ndarray] = []
        self._data: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self._last_flush = time.monotonic()

    def resume_position(self, provider: DataProvider, share: np.ndarray) -> int:
        """How many of ``share`` this process committed before (found by its last committed id)."""
        if self.state["done"]:
            return len(share)
        last = self.state["last_object_id"]
        if last is None:
            return 0
        return _position_after(last, self.state["rows"] + self.state["skipped"] - 1, provider, share)

    def write(self, object_ids: np.ndarray, data, skipped: int) -> None:
        """Buffer a batch (an array, or a dict of arrays with this table's keys); commit a chunk when it
        is full or ``commit_seconds`` old. ``skipped``: objects this process has skipped so far
        (recorded: it helps find the resume position)."""
        from hyrax.results.store import checked_batch

        self._data.append(checked_batch(self.columns, self.named, object_ids, data))
        self._ids.append(np.asarray(object_ids))
        self._buffered += len(object_ids)
        if self._buffered >= self.chunk_rows or time.monotonic() - self._last_flush >= self.commit_seconds:
            self.flush(skipped)

    def flush(self, skipped: int) -> None:
        """Write the buffered rows as fragments, then list them in the manifest (the commit)."""
        from hyrax.errors import ResultsWriteError
        from hyrax.results.run_dir import write_text_atomic
        from hyrax.results.store import arrow_table

        wrote = bool(self._buffered)
        if wrote:
            from lance.fragment import write_fragments

            ids = np.concatenate(self._ids)
            data = {key: np.concatenate([part[key] for part in self._data]) for key in self.columns}
            table = arrow_table(ids, data, self.schema)
            try:
                fragments = write_fragments(table, str(self.table), schema=self.schema)
            except OSError as error:
                raise ResultsWriteError(
                    f"Writing results to {self.table} failed ({error}). The {self.state['rows']} rows this "
                    f"process committed before are kept; free disk space and resume the run."
                ) from error
            fault_point("results.fragment_written")  # data files no manifest lists: orphans
            self.state["fragments"] += [fragment.to_json() for fragment in fragments]
            self.state["rows"] += len(ids)
            self.state["last_object_id"] = str(ids[-1])
            self._ids, self._data, self._buffered = [], [], 0
        self.state.update(skipped=int(skipped), pid=os.getpid())
        write_text_atomic(self.manifest, json.dumps(self.state))
        if wrote:
            fault_point("results.committed")
        self._last_flush = time.monotonic()

    def finish(self, skipped: int) -> None:
        """Commit what is buffered and mark this share done (in the same manifest write)."""
        self.state["done"] = True
        self.flush(skipped)


def _open_plan(run_dir: Path, world_size: int, objects: int, shape, dtype) -> dict | None:
    """Rank 0, before any work: the run's plan (written now for a new run, and an empty table made, so
    that fragments are written beside an existing one); None when the table was published already."""
    import shutil

    import lance

    from hyrax.results.run_dir import write_text_atomic
    from hyrax.results.store import _has_versions

    parts = parts_path(run_dir)
    for leftover in parts.parent.glob(".parts-removed-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    plan = _read_json(parts / PLAN_FILE)
    if plan is None and _published(run_dir):
        return None
    check_processes(run_dir, world_size)
    shape, dtype = _plan_layout(shape, dtype)
    if plan is None:
        plan = {"world_size": world_size, "objects": objects, "shape": shape, "dtype": dtype}
        plan["committed"] = False
        parts.mkdir(parents=True, exist_ok=True)
        write_text_atomic(parts / PLAN_FILE, json.dumps(plan))
    if plan["objects"] != objects:
        raise ResultsError(
            f"--resume {run_dir}: the run was started with {plan['objects']:,} objects to infer and the infer "
            f"group now has {objects:,}: the data changed. Start a new inference run."
        )
    if plan["shape"] != shape or plan["dtype"] != dtype:
        raise ResultsError(
            f"--resume {run_dir}: the run holds vectors of shape {plan['shape']} ({plan['dtype']}), but the "
            f"model now gives {shape} ({dtype}): resume with the same model and weights."
        )
    table = table_path(run_dir)
    if not _has_versions(table):
        schema = columns_schema(_columns(shape, dtype))
        lance.LanceDataset.commit(str(table), lance.LanceOperation.Overwrite(schema, []))
    return plan


def _distributed(config, run_dir, distribution, provider, indices, runner, shape, dtype) -> InferSummary:
    """Each rank commits its contiguous share as it goes, after what it committed before; when all are
    done, rank 0 publishes the table."""
    import torch.distributed as dist

    plan = None
    if distribution.is_main:
        plan = _open_plan(run_dir, distribution.world_size, len(indices), shape, dtype)
    plan = broadcast_object(plan, distribution)
    if plan is None:
        return _published_summary(run_dir)
    share = shard(indices, distribution)
    part = PartWriter(run_dir, distribution.rank, shape, dtype, config["infer"]["commit_seconds"])
    start = part.resume_position(provider, share)
    skips = Skips.resume(part.skips_path, share[:start])
    if 0 < start < len(share):
        logger.info("rank %d resuming after %d of its %d objects", distribution.rank, start, len(share))
    written, began = 0, time.perf_counter()
    if start < len(share):
        loader = loader_from_config(config, provider, RowSampler(share[start:]), skips)
        what = f"infer (rank 0 of {distribution.world_size})"
        with Progress(
            what, total=len(share) - start, unit="object", enabled=distribution.is_main
        ) as progress:
            for object_ids, outputs in predict_batches(runner, loader, provider, skips):
                part.write(object_ids, outputs, skips.count)
                written += len(object_ids)
                progress.update(len(object_ids))
    part.finish(skips.count)
    seconds = time.perf_counter() - began
    gathered: list[Any] = [None] * distribution.world_size
    dist.all_gather_object(gathered, (written, seconds))  # also waits for every rank to be done
    summary = None
    if distribution.is_main:
        summary = publish_parts(run_dir, sum(g[0] for g in gathered), max(g[1] for g in gathered))
        if summary.skipped:
            logger.warning("%d object(s) skipped (all listed in %s)", summary.skipped, run_dir / SKIPPED_FILE)
    return broadcast_object(summary, distribution)


def publish_parts(run_dir: Path, written_now: int = 0, seconds: float = 0.0) -> InferSummary:
    """Rank 0, once every rank is done: commit all ranks' fragments in rank order (one version; the
    table then holds every object once, in dataset order), compact the table, index object_id, delete
    the data files no version uses (chunks of killed processes), list the skipped objects, write the
    stats, and remove the parts. Each step can be redone, so another resume completes a crashed finish."""
    import datetime
    import shutil

    import lance
    from lance.fragment import FragmentMetadata

    from hyrax.results.run_dir import write_text_atomic
    from hyrax.results.store import compact_table, id_index_path, index_ids

    parts = parts_path(run_dir)
    plan = _read_json(parts / PLAN_FILE)
    if plan is None:
        return _published_summary(run_dir)
    manifests = [_read_json(parts / f"rank-{rank}.json") or {} for rank in range(plan["world_size"])]
    unfinished = [rank for rank, manifest in enumerate(manifests) if not manifest.get("done")]
    if unfinished:
        raise ResultsError(
            f"Rank(s) {unfinished} of {run_dir} have not finished their share; resume the run."
        )
    path = table_path(run_dir)
    columns = _columns(plan["shape"], plan["dtype"])
    if not plan["committed"]:
        fragments = [FragmentMetadata.from_json(json.dumps(f)) for m in manifests for f in m["fragments"]]
        operation = lance.LanceOperation.Overwrite(columns_schema(columns), fragments)
        id_index_path(path).unlink(missing_ok=True)
        lance.LanceDataset.commit(str(path), operation)
        # From here on the manifests' fragments may be compacted away: never commit them again.
        write_text_atomic(parts / PLAN_FILE, json.dumps({**plan, "committed": True}))
    compact_table(path, _row_bytes(columns))
    rows = lance.dataset(str(path)).count_rows()
    if rows:
        index_ids(path)
    # Every process is done, so a data file that no version lists is an orphan: the chunk of a killed
    # process, written before its manifest could list it.
    lance.dataset(str(path)).cleanup_old_versions(older_than=datetime.timedelta(0), delete_unverified=True)
    check_unique_ids(run_dir)
    summary = InferSummary(rows, _merge_skips(run_dir, parts, plan["world_size"]), written_now, seconds)
    record_stats(run_dir, summary)
    trash = parts.with_name(f".parts-removed-{os.getpid()}")
    os.replace(parts, trash)  # one step: the parts are there, whole, or gone
    shutil.rmtree(trash, ignore_errors=True)
    return summary


def _merge_skips(run_dir: Path, parts: Path, world_size: int) -> int:
    """The ranks' skipped objects, in rank order (dataset order), as the run's skipped_objects.csv."""
    import csv

    sources = [parts / f"skipped-rank-{rank}.csv" for rank in range(world_size)]
    target = run_dir / SKIPPED_FILE
    temporary = target.with_name(f".{target.name}.tmp")  # one name: a finish redone overwrites it
    count = 0
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(Skips.HEADER)
        for source in filter(Path.is_file, sources):
            with open(source, newline="", encoding="utf-8") as part:
                rows = csv.reader(part)
                next(rows, None)
                for row in rows:
                    writer.writerow(row)
                    count += 1
        handle.flush()
        os.fsync(handle.fileno())
    if count:
        os.replace(temporary, target)
    else:
        temporary.unlink()
    return count


def _published_summary(run_dir: Path) -> InferSummary:
    """What the stats of a published run say (for a resume that finds nothing left to do)."""
    with open(run_dir / STATS_FILE, "rb") as handle:
        stats = tomllib.load(handle)
    return InferSummary(int(stats["objects_written"]), int(stats["skipped"]))
