"""Inference: every object of the ``infer`` group through the trained model, streamed to a results table.

The weights are ``infer.model_weights_file`` (a file or a train run directory) or the latest complete
train run's; ``prepare_inputs`` is the one saved beside the weights, so data are prepared exactly as in
training. Rows are written in dataset order, in chunks; a run that was killed continues after the last
committed object. Under torchrun each process takes a contiguous share of the objects, writes its part
of the table, and rank 0 publishes all parts in one commit, in order.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.loader import loader_from_config
from hyrax.datasets.provider import DataProvider
from hyrax.datasets.splits import compute_splits
from hyrax.errors import ConfigError, ResultsError
from hyrax.models.model import load_prepare_inputs, to_torch
from hyrax.results.run_dir import resolve_run
from hyrax.results.store import ResultWriter
from hyrax.training.distributed import Distribution

logger = logging.getLogger(__name__)


def weights_location(config: Mapping, key: str = "infer.model_weights_file") -> Path:
    """The weights file: ``key`` (a file, or a train run directory), else the latest complete train run's."""
    given = get_setting(config, key)
    run = Path(given).expanduser() if given is not None else resolve_run(config, "train")
    if run.is_file():
        return run
    if not run.is_dir():
        raise ResultsError(f"{key} = '{given}' does not exist. Give a weights file or a train run directory.")
    filename = config["train"]["weights_filename"]
    snapshot = run / "runtime_config.toml"
    if snapshot.is_file():
        with open(snapshot, "rb") as handle:
            filename = tomllib.load(handle).get("train", {}).get("weights_filename", filename)
    path = run / filename
    if not path.is_file():
        raise ResultsError(f"No weights file '{filename}' in {run}; is it a complete train run?")
    return path


def infer_provider(config: Mapping) -> tuple[DataProvider, np.ndarray]:
    """The infer group's provider and the rows to infer (the first N in dataset order)."""
    request = config.get("data_request", {})
    if "infer" not in request:
        raise ConfigError(
            "Inference needs a [data_request.infer] group: the objects to turn into vectors. Groups: "
            f"{', '.join(request) or '(none)'}. Add e.g. [data_request.infer.data] with the dataset_class to use."
        )
    provider = DataProvider(config, "infer")
    indices = compute_splits(config, {"infer": provider}).indices["infer"]
    return provider, indices


def load_model(config: Mapping, provider: DataProvider, index: int, weights: Path):
    """The trained model (eval mode) and the prepare_inputs saved with its weights."""
    from hyrax.training.loop import build_model

    model, _ = build_model(config, provider, index)
    model.load(weights)
    model.eval()
    prepare = load_prepare_inputs(weights.parent) or type(model).prepare_inputs
    return model, prepare


class RowSampler:
    """Rows in the given order, from a numpy array: 8 bytes an object, not a Python list's ~36."""

    def __init__(self, indices: np.ndarray):
        self.indices = np.asarray(indices, dtype=np.int64)

    def __iter__(self):
        for start in range(0, len(self.indices), 65536):
            yield from self.indices[start : start + 65536].tolist()

    def __len__(self) -> int:
        return len(self.indices)


def shard(indices: np.ndarray, distribution: Distribution) -> np.ndarray:
    """Rank r's contiguous share of ``indices``: concatenated in rank order they are ``indices``."""
    bounds = np.linspace(0, len(indices), distribution.world_size + 1).astype(int)
    return indices[bounds[distribution.rank] : bounds[distribution.rank + 1]]


def predict_batches(model, prepare: Callable, loader, device) -> Any:
    """(object ids, outputs as numpy) for each batch of ``loader``."""
    import torch

    with torch.inference_mode():
        for batch in loader:
            output = model.infer_batch(to_torch(prepare(batch), device))
            yield batch["object_id"], output.detach().cpu().numpy()


def resume_position(writer: ResultWriter, provider: DataProvider, indices: np.ndarray) -> int:
    """How many of ``indices`` the committed rows already cover (found by the last committed id)."""
    last = writer.last_object_id()
    if last is None:
        return 0
    ids = provider.ids()[indices]
    matches = np.flatnonzero(ids == last)
    if not len(matches):
        raise ResultsError(
            f"The results table ends with object {last}, which is not among the objects to infer: the run was made "
            f"with other data. Start a new inference run."
        )
    return int(matches[0]) + 1


def run_inference(config: Mapping, run_dir: Path, distribution: Distribution, resume: bool = False) -> int:
    """Write the results table in ``run_dir``; return the number of rows written by this process."""
    import torch

    provider, indices = infer_provider(config)
    if not len(indices):
        raise ConfigError("The infer group has no objects.")
    weights = weights_location(config)
    model, prepare = load_model(config, provider, int(indices[0]), weights)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(device)
    logger.info("inferring %d objects with %s", len(indices), weights)
    sample = provider.collate([provider[int(indices[0])]])
    with torch.inference_mode():
        probe = model.infer_batch(to_torch(prepare(sample), device)).detach().cpu().numpy()
    shape, dtype = probe.shape[1:], probe.dtype
    if distribution.active:
        return _distributed(
            config, run_dir, distribution, provider, indices, model, prepare, device, shape, dtype
        )
    writer = ResultWriter(
        run_dir, shape, dtype, resume=resume, commit_seconds=config["infer"]["commit_seconds"]
    )
    start = resume_position(writer, provider, indices) if resume else 0
    if start:
        logger.info("resuming after %d objects already written", start)
    loader = loader_from_config(config, provider, RowSampler(indices[start:]))
    written = 0
    began = time.perf_counter()
    for object_ids, outputs in _progress(predict_batches(model, prepare, loader, device), len(loader)):
        writer.write(object_ids, outputs)
        written += len(object_ids)
    writer.flush()
    seconds = time.perf_counter() - began
    writer.close()
    _record_stats(run_dir, written, seconds, len(provider.skipped))
    _report_skips(provider)
    return written


def _record_stats(run_dir: Path, written: int, seconds: float, skipped: int) -> None:
    """``infer_stats.toml``: how many objects this run wrote, how fast (from first batch to last commit)."""
    import tomlkit

    from hyrax.results.run_dir import write_text_atomic

    rate = written / seconds if seconds > 0 else 0.0
    stats = {
        "objects_written": written,
        "seconds": round(seconds, 3),
        "objects_per_second": round(rate, 1),
        "skipped": skipped,
    }
    write_text_atomic(run_dir / "infer_stats.toml", tomlkit.dumps(stats))
    logger.info("wrote %d results in %.1f s (%.0f objects/s)", written, seconds, rate)


def _distributed(
    config, run_dir, distribution, provider, indices, model, prepare, device, shape, dtype
) -> int:
    """Each rank writes uncommitted fragments of its share; rank 0 commits them all, in rank order."""
    import lance
    import torch.distributed as dist
    from lance.fragment import write_fragments

    from hyrax.results.store import _schema, arrow_table, table_path

    path = table_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = _schema(tuple(shape), str(dtype))
    mine = shard(indices, distribution)
    loader = loader_from_config(config, provider, RowSampler(mine))
    fragments, ids, outputs, written = [], [], [], 0
    for object_ids, output in predict_batches(model, prepare, loader, device):
        ids.append(object_ids)
        outputs.append(output)
        written += len(object_ids)
        if sum(len(i) for i in ids) >= 65536:
            fragments += write_fragments(
                arrow_table(np.concatenate(ids), np.concatenate(outputs), schema), str(path), schema=schema
            )
            ids, outputs = [], []
    if ids:
        fragments += write_fragments(
            arrow_table(np.concatenate(ids), np.concatenate(outputs), schema), str(path), schema=schema
        )
    gathered: list[Any] = [None] * distribution.world_size
    dist.all_gather_object(gathered, fragments)
    if distribution.is_main:
        ordered = [fragment for part in gathered for fragment in part]
        lance.LanceDataset.commit(str(path), lance.LanceOperation.Overwrite(schema, ordered))
        lance.dataset(str(path)).create_scalar_index("object_id", "BTREE", replace=True)
    dist.barrier()
    _report_skips(provider)
    return written


def _progress(batches, total: int):
    import sys

    if not sys.stderr.isatty():
        yield from batches
        return
    from tqdm import tqdm

    yield from tqdm(batches, total=total, unit="batch", desc="infer")


def _report_skips(provider: DataProvider) -> None:
    if provider.skipped:
        logger.warning(
            "%d object(s) were skipped and have no result: %s",
            len(provider.skipped),
            "; ".join(f"{object_id}: {reason}" for object_id, reason in provider.skipped[:20]),
        )
