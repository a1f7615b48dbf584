"""Experiment tracking: MLflow (a local store inside results_dir) and TensorBoard event files.

Both are imported only when a run starts, and a tracking failure is a warning: it never stops training.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hyrax.config import get_setting
from hyrax.errors import HyraxWarning

logger = logging.getLogger(__name__)


class TrackingWarning(HyraxWarning):
    """MLflow or TensorBoard could not record something; training goes on."""


def _flat(prefix: str, table: Mapping) -> dict[str, Any]:
    flat = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flat(name, value))
        else:
            flat[name] = value
    return flat


def tracked_params(config: Mapping, model_name: str) -> dict[str, Any]:
    """The parameters a run is compared by: model settings, optimizer/criterion/scheduler, epochs, batch."""
    params: dict[str, Any] = {"model.name": model_name}
    params.update(_flat(f"model.{model_name}", config["model"].get(model_name, {}) or {}))
    for section in ("optimizer", "criterion", "scheduler"):
        name = get_setting(config, f"{section}.name")
        params[f"{section}.name"] = name
        if name and isinstance(config.get(name), Mapping):
            params.update(_flat(name, config[name]))
    params["train.epochs"] = config["train"]["epochs"]
    params["data_loader.batch_size"] = config["data_loader"]["batch_size"]
    return params


def _end_orphans(client, experiment_id: str, results_dir: Path) -> None:
    """MLflow runs still RUNNING whose train run has no live writer (a killed training): KILLED."""
    from hyrax.results.run_dir import RunDir

    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        directory = results_dir / (run.info.run_name or "")
        if run.info.run_name and directory.is_dir() and not RunDir(directory).writer_alive():
            client.set_terminated(run.info.run_id, status="KILLED")
            logger.info(
                "MLflow run %s was left running by a killed training: marked KILLED", run.info.run_name
            )


class Tracker:
    """Records one training run to MLflow and TensorBoard."""

    def __init__(self, config: Mapping, run_dir: Path, model_name: str):
        self.mlflow = None
        self.run_id = None
        self.tensorboard = None
        self._start_mlflow(config, run_dir, model_name)
        self._start_tensorboard(run_dir)

    def _warn(self, what: str, error: Exception) -> None:
        warnings.warn(
            f"{what} failed ({type(error).__name__}: {error}); training continues.",
            TrackingWarning,
            stacklevel=3,
        )

    def _start_mlflow(self, config: Mapping, run_dir: Path, model_name: str) -> None:
        try:
            # mlflow 3 refuses a plain file store unless asked; a local folder is what a scientist can keep.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            from mlflow.tracking import MlflowClient

            store = Path(config["general"]["results_dir"]).expanduser().resolve() / "mlflow"
            client = MlflowClient(tracking_uri=store.as_uri())
            name = config["train"]["experiment_name"]
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            _end_orphans(client, experiment_id, run_dir.parent)
            run_name = get_setting(config, "train.run_name") or run_dir.name
            run = client.create_run(experiment_id, run_name=run_name)
            self.mlflow, self.run_id = client, run.info.run_id
            from mlflow.entities import Param

            params = [Param(k, str(v)[:6000]) for k, v in tracked_params(config, model_name).items()]
            client.log_batch(self.run_id, params=params)
            logger.info("MLflow run %s in %s", run_name, store)
        except Exception as error:  # any tracking failure must not stop training
            self._warn("MLflow set-up", error)
            self.mlflow = None

    def _start_tensorboard(self, run_dir: Path) -> None:
        try:
            from tensorboardX import SummaryWriter

            self.tensorboard = SummaryWriter(logdir=str(run_dir / "tensorboard"))
        except Exception as error:  # any tracking failure must not stop training
            self._warn("TensorBoard set-up", error)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.mlflow is not None:
            try:
                import time

                from mlflow.entities import Metric

                now = int(time.time() * 1000)
                self.mlflow.log_batch(
                    self.run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in metrics.items()]
                )
            except Exception as error:  # any tracking failure must not stop training
                self._warn("MLflow logging", error)
        if self.tensorboard is not None:
            try:
                for key, value in metrics.items():
                    self.tensorboard.add_scalar(key, float(value), epoch)
                self.tensorboard.flush()
            except Exception as error:  # any tracking failure must not stop training
                self._warn("TensorBoard logging", error)

    def close(self, status: str = "FINISHED") -> None:
        if self.mlflow is not None:
            try:
                self.mlflow.set_terminated(self.run_id, status=status)
            except Exception as error:  # any tracking failure must not stop training
                self._warn("MLflow close", error)
        if self.tensorboard is not None:
            self.tensorboard.close()
