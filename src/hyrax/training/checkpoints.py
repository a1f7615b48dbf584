"""Training checkpoints: ``checkpoint_epoch_<N>.pt`` (the latest epoch) and ``best_checkpoint.pt``; a streamed
training's ``stream_checkpoint.pt`` (train_stream: the batches trained instead of the epoch).

A checkpoint holds the model, optimizer and scheduler states, the epoch, the best validation loss so
far and the model's class, so that ``train.resume`` continues exactly where a run stopped. Files are
written under a temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hyrax.errors import HyraxError
from hyrax.faults import fault_point

_EPOCH = re.compile(r"^checkpoint_epoch_(\d+)\.pt$")
BEST = "best_checkpoint.pt"
STREAM = "stream_checkpoint.pt"


class CheckpointError(HyraxError, ValueError):
    """A checkpoint is missing, unreadable, or belongs to another model."""


def save_checkpoint(
    directory: Path,
    model,
    epoch: int,
    best_loss: float | None,
    keep_previous: bool = False,
    seed: int | None = None,
) -> Path:
    """Write ``checkpoint_epoch_<epoch>.pt`` atomically (and, unless ``keep_previous``, remove the
    older ones). ``seed``: the run's seed (splits, shuffles, initialisation), which a resume reuses."""
    state = _state(model, epoch=epoch, seed=seed, best_loss=best_loss)
    path = directory / f"checkpoint_epoch_{epoch}.pt"
    _save_atomic(state, path)
    if not keep_previous:
        for old in directory.glob("checkpoint_epoch_*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    return path


def save_stream_checkpoint(directory: Path, model, batches: int, samples: int) -> Path:
    """Write ``stream_checkpoint.pt`` atomically: a streamed training (train_stream) after ``batches``
    batches of ``samples`` objects. ``load_checkpoint`` reads it back (``batches`` among its entries)."""
    path = Path(directory) / STREAM
    _save_atomic(_state(model, epoch=0, seed=None, best_loss=None, batches=batches, samples=samples), path)
    return path


def _state(model, **entries: Any) -> dict[str, Any]:
    return {
        "model_class": type(model).__name__,
        **entries,
        "model": model.state_dict(),
        "optimizer": model.optimizer.state_dict() if getattr(model, "optimizer", None) else None,
        "scheduler": model.scheduler.state_dict() if getattr(model, "scheduler", None) else None,
    }


def copy_as_best(path: Path) -> Path:
    import shutil

    best = path.with_name(BEST)
    temporary = best.with_name(f".{BEST}.tmp")
    shutil.copyfile(path, temporary)
    temporary.replace(best)
    return best


def _save_atomic(state: dict, path: Path) -> None:
    import torch

    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(state, temporary)
        fault_point("checkpoint.temporary_written")
        temporary.replace(path)
    except (OSError, RuntimeError) as error:  # torch reports a short write as a RuntimeError
        temporary.unlink(missing_ok=True)
        import shutil

        from hyrax.errors import ResultsWriteError

        free = shutil.disk_usage(path.parent).free
        raise ResultsWriteError(
            f"Cannot write the checkpoint {path} ({str(error).splitlines()[0][:200]}; {free / 2**20:,.0f} MB "
            f"free there). Free space (or point general.results_dir elsewhere), then continue with "
            f"train.resume = '{path.parent}'."
        ) from error
    except BaseException:  # a kill: no half-written file left behind
        temporary.unlink(missing_ok=True)
        raise


def latest_checkpoint(location: str | Path) -> Path:
    """A checkpoint file, or the newest ``checkpoint_epoch_<N>.pt`` in a train run directory."""
    location = Path(location).expanduser()
    if location.is_file():
        return location
    if location.is_dir():
        found = sorted((int(m.group(1)), p) for p in location.iterdir() if (m := _EPOCH.match(p.name)))
        if found:
            return found[-1][1]
        raise CheckpointError(f"train.resume: no checkpoint_epoch_<N>.pt in '{location}'.")
    raise CheckpointError(
        f"train.resume: '{location}' does not exist. Give a checkpoint file or a train run directory."
    )


def checkpoint_seed(config, state: dict | None = None) -> int | None:
    """The seed of the run that ``train.resume`` continues (None when it does not resume, or the
    checkpoint predates seeds being recorded). A resume must split and shuffle as that run did: a
    different seed would move validation objects into training. ``state``: the checkpoint, when the
    caller has already read it."""
    import torch

    from hyrax.config import get_setting
    from hyrax.datasets.splits import configured_seed
    from hyrax.errors import ConfigError

    resume = get_setting(config, "train.resume")
    if resume is None:
        return None
    if state is None:
        state = torch.load(latest_checkpoint(resume), map_location="cpu", weights_only=True)
    seed = state.get("seed")
    wanted = configured_seed(config)
    if seed is not None and wanted is not None and int(wanted) != int(seed):
        raise ConfigError(
            f"train.resume continues a run whose seed was {seed}, but data_set.seed is {wanted}: its "
            f"train/validate split and shuffles would change mid-run. Set data_set.seed = {seed} (or false), "
            f"or start a new training."
        )
    return None if seed is None else int(seed)


def load_checkpoint(path: Path, model) -> dict[str, Any]:
    """Restore model, optimizer and scheduler from ``path``; return the checkpoint's other entries."""
    import torch

    from hyrax.models.model import check_state_fits

    try:
        # Tensors and plain values only: a checkpoint never runs code when it is read.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file, or one holding Python objects beyond tensors
        raise CheckpointError(
            f"Cannot read checkpoint '{path}': {str(error).splitlines()[0]}. Hyrax reads checkpoints as "
            "tensors and plain values only (weights_only); a file holding other Python objects is refused."
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"'{path}' is not a Hyrax training checkpoint (it has no model state).")
    if state.get("model_class") != type(model).__name__:
        raise CheckpointError(
            f"Checkpoint '{path}' was written by model {state.get('model_class')}, but model.name is "
            f"{type(model).__name__}. Resume with the same model, or start fresh (train.resume = false)."
        )
    check_state_fits(model, state["model"], str(path))
    model.load_state_dict(state["model"])
    if state.get("optimizer") and getattr(model, "optimizer", None) is not None:
        model.optimizer.load_state_dict(state["optimizer"])
    if state.get("scheduler") and getattr(model, "scheduler", None) is not None:
        model.scheduler.load_state_dict(state["scheduler"])
    return {
        "epoch": int(state["epoch"]),
        "best_loss": state.get("best_loss"),
        "batches": int(state.get("batches") or 0),
        "samples": int(state.get("samples") or 0),
    }


def check_resumable(config) -> None:
    """Before a train run directory is made: ``train.resume`` names a readable checkpoint of the
    configured model (and is not combined with ``train.model_weights_file``), so a bad resume leaves no
    failed run behind."""
    import torch

    from hyrax.config import get_setting
    from hyrax.errors import ConfigError

    resume = get_setting(config, "train.resume")
    if resume is None:
        return
    if get_setting(config, "train.model_weights_file") is not None:
        raise ConfigError(
            "train.resume and train.model_weights_file are both set: resume continues a run (weights, optimizer, "
            "epoch count); model_weights_file starts a new run from given weights. Set only one."
        )
    path = latest_checkpoint(resume)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file, or one holding Python objects beyond tensors
        raise CheckpointError(f"Cannot read checkpoint '{path}': {str(error).splitlines()[0]}.") from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"'{path}' is not a Hyrax training checkpoint (it has no model state).")
    wanted = str(get_setting(config, "model.name") or "").rsplit(".", 1)[-1]
    if wanted and state.get("model_class") != wanted:
        raise CheckpointError(
            f"Checkpoint '{path}' was written by model {state.get('model_class')}, but model.name is "
            f"{wanted}. Resume with the same model, or start fresh (train.resume = false)."
        )
    checkpoint_seed(config, state)  # a seed that contradicts the run's
