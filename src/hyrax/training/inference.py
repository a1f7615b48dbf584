"""Inference: every object of the ``infer`` group through the trained model, streamed to a results table.

The weights are ``infer.model_weights_file`` (a file or a train run directory) or the latest complete
train run's; ``prepare_inputs`` is the one saved beside the weights, so data are prepared exactly as in
training. Rows are written in dataset order, in chunks; a run that was killed continues after the last
committed object. Under torchrun each process takes a contiguous share of the objects and commits its
part as it goes (data files beside the table, listed in a manifest per process); when every process is
done, rank 0 publishes all parts in one commit, in dataset order. A killed run continues each share after
its last committed object (``torchrun --nproc_per_node=N -m hyrax infer --resume RUN``, with the same N).
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.loader import Skips, loader_from_config
from hyrax.datasets.provider import DataProvider
from hyrax.datasets.splits import compute_splits
from hyrax.errors import ConfigError, DataError, ResultsError
from hyrax.models.model import ModelContractError, load_prepare_inputs, to_torch
from hyrax.progress import Progress
from hyrax.results.run_dir import resolve_run
from hyrax.results.store import ResultWriter
from hyrax.training.distributed import Distribution

logger = logging.getLogger(__name__)

#: Objects skipped by ``data_set.on_bad_object = "skip"``, listed in the run directory.
SKIPPED_FILE = "skipped_objects.csv"
STATS_FILE = "infer_stats.toml"


@dataclass
class InferSummary:
    """What an inference run did: results in its table, objects skipped, and this session's work."""

    results: int
    skipped: int
    written_now: int = 0
    seconds: float = 0.0

    def message(self, run_dir: Path) -> str:
        """The line the command line ends with."""
        text = f"{self.results:,} results in {run_dir}"
        if self.skipped:
            text += f"; {self.skipped:,} object(s) skipped (listed in {run_dir / SKIPPED_FILE})"
        return text


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
            section = "train_stream" if "-train_stream-" in run.name else "train"  # a streamed training's
            filename = tomllib.load(handle).get(section, {}).get("weights_filename", filename)
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
    return provider, compact_rows(indices)


def compact_rows(indices: np.ndarray) -> np.ndarray:
    """Row numbers in 4 bytes each where they fit (40 MB for 10M objects, not 80)."""
    if len(indices) and int(indices.max()) < 2**31:
        return indices.astype(np.int32, copy=False)
    return indices


def load_model(config: Mapping, provider: DataProvider, index: int, weights: Path):
    """The trained model (eval mode) and the prepare_inputs saved with its weights."""
    from hyrax.training.loop import build_model

    model, _ = build_model(config, provider, index)
    model.load(weights)
    model.eval()
    prepare = load_prepare_inputs(weights.parent) or type(model).prepare_inputs
    from hyrax.trace import traced_model, traced_prepare  # recording only under trace=N

    traced_model(model)
    return model, traced_prepare(prepare)


class RowSampler:
    """Rows in the given order, from a numpy array: 4 or 8 bytes an object, not a Python list's ~36."""

    def __init__(self, indices: np.ndarray):
        self.indices = np.asarray(indices)

    def __iter__(self):
        for start in range(0, len(self.indices), 65536):
            yield from self.indices[start : start + 65536].tolist()

    def __len__(self) -> int:
        return len(self.indices)


def inference_device():
    """This process's device: GPU number LOCAL_RANK (torchrun's, or Slurm's local task id) when several
    are visible, so the processes of a node each take their own; the CPU without a GPU."""
    import os

    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def shard(indices: np.ndarray, distribution: Distribution) -> np.ndarray:
    """Rank r's contiguous share of ``indices``: concatenated in rank order they are ``indices``."""
    bounds = np.linspace(0, len(indices), distribution.world_size + 1).astype(int)
    return indices[bounds[distribution.rank] : bounds[distribution.rank + 1]]


class TorchRunner:
    """A trained torch model as inference runs it: a numpy batch in, its outputs as numpy out."""

    def __init__(self, model, prepare: Callable, device):
        self.model, self.prepare, self.device = model, prepare, device

    def __call__(self, batch) -> np.ndarray | dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            return outputs_to_numpy(self.model.infer_batch(to_torch(self.prepare(batch), self.device)))


def outputs_to_numpy(output: Any) -> np.ndarray | dict[str, np.ndarray]:
    """What ``infer_batch`` returned (a tensor, or a dict of tensors: one results column per key, as
    published) as numpy on the CPU."""
    if isinstance(output, Mapping):
        if not output:
            raise ModelContractError(
                "infer_batch returned an empty dict: return a tensor, or a dict of them."
            )
        return {str(key): _numpy(value, f"infer_batch()[{key!r}]") for key, value in output.items()}
    return _numpy(output, "infer_batch()")


def _numpy(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise ModelContractError(
        f"{what} is a {type(value).__name__}: return a torch tensor (one row per object), or a dict of them."
    )


def _batch_length(outputs: np.ndarray | Mapping[str, np.ndarray]) -> int:
    return len(next(iter(outputs.values()))) if isinstance(outputs, Mapping) else len(outputs)


def predict_batches(runner: Callable, loader, provider: DataProvider | None = None, skips=None) -> Any:
    """(object ids, outputs as numpy) for each batch of ``loader``. With ``provider``, outputs that are not
    finite (NaN, inf) never reach the table: the batch's objects are named in an error, or recorded as
    skipped with ``data_set.on_bad_object = "skip"``."""
    for batch in loader:
        object_ids, outputs = batch["object_id"], runner(batch)
        if provider is not None:
            object_ids, outputs = _finite_only(object_ids, outputs, provider, skips)
        yield object_ids, outputs


def _finite_only(object_ids, outputs, provider: DataProvider, skips):
    arrays = outputs.values() if isinstance(outputs, Mapping) else [outputs]
    finite = np.ones(_batch_length(outputs), dtype=bool)
    for values in arrays:
        if values.dtype.kind in "fc":
            finite &= np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if finite.all():
        return object_ids, outputs
    bad = np.asarray(object_ids)[~finite]
    if not provider.skip_bad or skips is None:
        raise DataError(
            f"The model's output is not finite (NaN or inf) for {len(bad)} object(s) of a batch, e.g. "
            f"{', '.join(map(str, bad[:5]))}; nothing of that batch was written. Check the model on them "
            f'(a NaN in their data, a division by zero), or set data_set.on_bad_object = "skip" to record '
            f"and leave such objects out."
        )
    rows = provider.rows_of([str(b) for b in bad])
    skips.add(
        [(str(i), "model output not finite (NaN or inf)", int(r)) for i, r in zip(bad, rows, strict=True)]
    )
    if isinstance(outputs, Mapping):
        return np.asarray(object_ids)[finite], {key: values[finite] for key, values in outputs.items()}
    return np.asarray(object_ids)[finite], outputs[finite]


def resume_position(
    writer: ResultWriter, provider: DataProvider, indices: np.ndarray, skipped: int = 0
) -> int:
    """How many of ``indices`` the committed rows already cover (found by the last committed id;
    ``skipped``: objects skipped before, which have no row)."""
    last = writer.last_object_id()
    if last is None:
        return 0
    return _position_after(last, writer.committed + skipped - 1, provider, indices)


def _position_after(last: str, guess: int, provider: DataProvider, indices: np.ndarray) -> int:
    """How many of ``indices`` come up to and including object ``last`` (``guess``: its likely
    position in ``indices``, which saves a look-up in the id index when right)."""
    guess = min(max(guess, 0), len(indices) - 1)
    row = int(provider.rows_of([last], hints=[indices[guess]])[0])
    matches = np.flatnonzero(indices == row) if row >= 0 else []
    if not len(matches):
        raise ResultsError(
            f"The results table ends with object {last}, which is not among the objects to infer: the run was made "
            f"with other data. Start a new inference run."
        )
    return int(matches[0]) + 1


def run_inference(
    config: Mapping,
    run_dir: Path,
    distribution: Distribution,
    resume: bool = False,
    runner: Callable | None = None,
    stage: str = "infer",
) -> InferSummary:
    """Write the results table in ``run_dir``; return what was done. ``runner`` (a numpy batch in, numpy
    outputs out; default: the trained torch model) is what ``engine`` gives for an ONNX export: one loop,
    with the same resume, skips, progress and stats, whatever computes the outputs."""
    from hyrax.training.loop import enter_run

    enter_run(config, run_dir, distribution)
    provider, indices = infer_provider(config)
    if not len(indices):
        raise ConfigError("The infer group has no objects.")
    pinned = read_pins(run_dir) if resume else None
    weights = None  # the torch weights to pin (a resume checks the pinned ones instead)
    if runner is None:
        path = Path(pinned["weights"]) if pinned else weights_location(config)
        weights = None if pinned else path
        model, prepare = load_model(config, provider, int(indices[0]), path)
        device = inference_device()
        model.to(device)
        runner = TorchRunner(model, prepare, device)
        logger.info("inferring %d objects with %s", len(indices), path)
    elif distribution.active:
        raise ConfigError(f"{stage} runs in one process: start it without torchrun.")
    pins = _pins(provider, indices, weights)
    if pinned is not None:
        check_pins(run_dir, pinned, pins)
    elif distribution.is_main:
        write_pins(run_dir, pins)
    from hyrax.training.loop import first_readable

    sample = first_readable(provider, int(indices[0]))  # the first object may be skipped as unreadable
    probe = runner(sample)
    shape, dtype = ResultWriter.layout_of(probe)  # a dict: one column per key
    provider.take_skipped()  # the probe's own skip (if any) is counted when the loader meets the object
    from hyrax.training.distributed_inference import _distributed, check_processes

    if resume:
        check_processes(run_dir, distribution.world_size)
    if distribution.active:
        return _distributed(config, run_dir, distribution, provider, indices, runner, shape, dtype)
    writer = ResultWriter(
        run_dir, shape, dtype, resume=resume, commit_seconds=config["infer"]["commit_seconds"]
    )
    start, skips = 0, Skips(run_dir / SKIPPED_FILE)
    if resume:
        start = resume_position(writer, provider, indices, _skip_count(run_dir))
        skips = Skips.resume(run_dir / SKIPPED_FILE, indices[:start])
        if start:
            logger.info("resuming after %d objects already written", start)
    provider.start_epoch("infer", 0)  # datasets' on_epoch_start("infer"), as for each training epoch
    loader = loader_from_config(config, provider, RowSampler(indices[start:]), skips)
    written = 0
    began = time.perf_counter()
    with Progress(stage, total=len(indices) - start, unit="object") as progress:
        for object_ids, outputs in predict_batches(runner, loader, provider, skips):
            writer.write(object_ids, outputs)
            written += len(object_ids)
            progress.update(len(object_ids))
    writer.flush()
    seconds = time.perf_counter() - began
    writer.close()
    check_unique_ids(run_dir)
    summary = InferSummary(writer.committed, skips.count, written, seconds)
    record_stats(run_dir, summary)
    if skips.count:
        logger.warning("%s", skips.summary())
    return summary


#: What a run started with (weights and their hash, the objects to infer), in the run directory: a resume
#: reuses exactly these, and refuses if they changed.
PINS_FILE = "inputs.toml"


def _pins(provider: DataProvider, indices: np.ndarray, weights: Path | None) -> dict:
    ends = provider.ids_at(np.asarray([indices[0], indices[-1]]))
    pins: dict = {"objects": int(len(indices)), "first_id": str(ends[0]), "last_id": str(ends[1])}
    if weights is not None:
        pins["weights"] = str(Path(weights).resolve())
        pins["weights_sha256"] = file_sha256(weights)
    return pins


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_pins(run_dir: Path, pins: dict) -> None:
    import tomlkit

    from hyrax.results.run_dir import write_text_atomic

    write_text_atomic(Path(run_dir) / PINS_FILE, tomlkit.dumps(pins))


def read_pins(run_dir: Path) -> dict | None:
    path = Path(run_dir) / PINS_FILE
    if not path.is_file():
        return None  # a run of an earlier release: its snapshot config is all there is
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def check_pins(run_dir: Path, pinned: dict, now: dict) -> None:
    """Refuse to resume when what the run started with changed (other weights, other objects)."""
    if "weights" in pinned:
        path = Path(pinned["weights"])
        if not path.is_file():
            raise ResultsError(
                f"Cannot resume {run_dir}: it started with the weights {path}, which no longer exist. Start a "
                f"new inference run."
            )
        if file_sha256(path) != pinned["weights_sha256"]:
            raise ResultsError(
                f"Cannot resume {run_dir}: the weights {path} changed since the run started (sha256 differs), "
                f"so its first rows and the rest would come from different models. Start a new inference run."
            )
    changed = [
        f"{key} {pinned[key]!r} -> {now[key]!r}"
        for key in ("objects", "first_id", "last_id")
        if key in pinned and pinned[key] != now[key]
    ]
    if changed:
        raise ResultsError(
            f"Cannot resume {run_dir}: the objects to infer changed since it started ({'; '.join(changed)}). "
            f"Start a new inference run."
        )


def check_unique_ids(run_dir: Path) -> None:
    """Every object of a finished results table once: the dataset's ids are checked here, for every kind
    of dataset, through the id index written with the table (8 bytes an object, one vectorized pass).
    Repeated ids are an error naming some, and the run is not marked complete."""
    from hyrax.results.store import ResultDataset, table_path

    results = ResultDataset(data_location=table_path(run_dir))
    index = results._id_index()
    if index is None:
        return
    count, examples = index.duplicates()
    if count:
        raise DataError(
            f"{count} object id(s) occur more than once among the results in {run_dir} (e.g. "
            f"{', '.join(examples)}): the dataset gives the same id to different objects, so the run is not "
            f"complete. Make get_object_id (or the id column) unique, then infer again."
        )


def _skip_count(run_dir: Path) -> int:
    """Objects listed as skipped by an earlier session of this run."""
    path = run_dir / SKIPPED_FILE
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as handle:
        return max(0, sum(1 for _ in handle) - 1)


def record_stats(run_dir: Path, summary: InferSummary) -> None:
    """``infer_stats.toml``: results in the table, objects skipped, and how fast this session wrote
    (from its first batch to its last commit)."""
    import tomlkit

    from hyrax.results.run_dir import write_text_atomic

    rate = summary.written_now / summary.seconds if summary.seconds > 0 else 0.0
    stats = {
        "objects_written": summary.results,  # the whole run's, every session of it
        "skipped": summary.skipped,  # likewise
        # A resumed run: what earlier (killed) sessions had committed, and what this one added.
        "written_before_this_session": max(0, summary.results - summary.written_now),
        "written_this_session": summary.written_now,
        "seconds": round(summary.seconds, 3),
        "objects_per_second": round(rate, 1),
    }
    write_text_atomic(run_dir / STATS_FILE, tomlkit.dumps(stats))
    logger.info("wrote %d results in %.1f s (%.0f objects/s)", summary.written_now, summary.seconds, rate)
