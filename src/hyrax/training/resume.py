"""``train --resume RUN_DIR``: continue an interrupted training in its own run directory.

A resumed training is the run it continues: the same configuration (its ``runtime_config.toml``), the
same seed, split and shuffles (from its last checkpoint), its epochs counted on from the last one saved.
A config that asks for something else is refused, naming each key, rather than silently ignored: a
different run is a new run (``train.resume`` starts one from a checkpoint).

>>> from hyrax.training.resume import continue_command
>>> continue_command("results/20250101-120000-train-ab12")
'hyrax train --resume results/20250101-120000-train-ab12 (in a notebook: h.train(resume="results/20250101-120000-train-ab12"))'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyrax.errors import ConfigError, ResultsError

#: Settings that say how a run is carried out, not what it computes: a resume may change them (they are
#: taken from the config given now).
RUNNING_SETTINGS = frozenset(
    {
        ("general", "log_level"),
        ("general", "log_destination"),
        ("general", "dev_mode"),
        ("data_loader", "num_workers"),
        ("data_loader", "pin_memory"),
    }
)


def continue_command(run_dir: str | Path) -> str:
    """How to continue the training in ``run_dir``, on the command line and in a notebook."""
    return f'hyrax train --resume {run_dir} (in a notebook: h.train(resume="{run_dir}"))'


def resumable_training(run_dir: str | Path):
    """The :class:`~hyrax.results.run_dir.RunDir` of an unfinished train run; a finished run, another
    verb's run or a folder that is no run is a ResultsError saying so."""
    from hyrax.results.run_dir import CONFIG_FILE, STATUS_FILE, RunDir

    path = Path(run_dir).expanduser()
    if not (path / STATUS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise ResultsError(
            f"train --resume {path}: not a Hyrax run directory (no {STATUS_FILE} and {CONFIG_FILE}). Give the "
            f"directory of the interrupted train run (the message of the interruption names it)."
        )
    run = RunDir(path)
    verb = run.status.get("verb")
    if verb != "train":
        raise ResultsError(
            f"train --resume {path}: that is a{'n' if str(verb)[:1] in 'aeiou' else ''} {verb} run."
        )
    if run.is_complete:
        raise ResultsError(
            f"train --resume {path}: that training is complete. To train it further, start a new run that "
            f'continues its epochs: train.resume = "{path}" with more train.epochs.'
        )
    return run


def resumed_config(run_dir: str | Path, current: Mapping) -> dict:
    """The config a resumed training runs with: the run's snapshot, with the :data:`RUNNING_SETTINGS` of
    ``current``, and ``train.resume`` pointing at the run's own last checkpoint (when it has one).

    ``current``: the config the resume was asked with. A key it sets to a value other than the snapshot's
    (and other than the default: a config that does not set a key leaves it to the run) is a ConfigError
    listing each such key."""
    from hyrax.config import ConfigManager, to_plain
    from hyrax.config.keys import join_key, set_path, walk
    from hyrax.config.manager import to_config_dict
    from hyrax.config.secrets import MASK
    from hyrax.results.run_dir import CONFIG_FILE
    from hyrax.training.checkpoints import latest_checkpoint

    path = Path(run_dir).expanduser()
    manager = ConfigManager(path / CONFIG_FILE)
    snapshot, defaults = to_plain(manager.config), to_plain(manager.defaults)
    changed = []
    for key, value in walk(to_plain(current)):
        if isinstance(value, Mapping) or key[:2] == ("train", "resume"):
            continue
        started = _get(snapshot, key)
        if started == MASK or key[:2] in RUNNING_SETTINGS:  # secrets are masked in the snapshot
            set_path(snapshot, list(key), value)
        elif value != started and value != _get(defaults, key):
            changed.append(
                f"  - {join_key(key)}: the run started with {_shown(started)}, now {_shown(value)}"
            )
    if changed:
        raise ConfigError(
            f"Cannot resume {path}: the config differs from the one the run started with "
            f"({path / CONFIG_FILE}):\n"
            + "\n".join(changed)
            + "\nA resumed run continues exactly what it started: "
            f"resume with that config (or no config at all), or start a new run from this one's last checkpoint "
            f'with the changed config and train.resume = "{path}".'
        )
    try:
        checkpoint = latest_checkpoint(path)
    except (ResultsError, ValueError):  # no epoch finished: the run starts again, in its directory
        checkpoint = None
    if checkpoint is not None:  # its own checkpoint holds the weights it started from, and more
        snapshot["train"]["resume"] = str(path)
        snapshot["train"]["model_weights_file"] = False
    return to_config_dict(snapshot)


_MISSING = object()


def _get(table: Mapping, key: tuple[str, ...]) -> Any:
    from hyrax.config.keys import get_path

    try:
        return get_path(table, list(key))
    except (KeyError, TypeError):
        return _MISSING


def _shown(value: Any) -> str:
    return "(unset)" if value is _MISSING else repr(value)


def open_resumed(current: Mapping, run_dir: str | Path):
    """Take up the train run ``run_dir`` again: (its RunDir on rank 0 / None elsewhere, the config it
    runs with, its path, the Distribution). The run is locked (one writer) and marked running."""
    from hyrax.training.checkpoints import check_resumable
    from hyrax.training.distributed import setup

    run = resumable_training(run_dir)
    config = resumed_config(run.path, current)
    check_resumable(config)  # its checkpoint is readable and fits the model, before anything changes
    distribution = setup(config)
    if not distribution.is_main:
        return None, config, run.path, distribution
    run.lock("train")
    run.mark_running()
    return run, config, run.path, distribution
