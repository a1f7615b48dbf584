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


def tracked_params(config: Mapping, model_name: str, section: str = "train") -> dict[str, Any]:
    """The parameters a run is compared by: model settings, optimizer/criterion/scheduler, epochs (a
    stream's ``[train_stream]`` settings instead), batch."""
    params: dict[str, Any] = {"model.name": model_name}
    params.update(_flat(f"model.{model_name}", config["model"].get(model_name, {}) or {}))
    for part in ("optimizer", "criterion", "scheduler"):  # not `section`: that names the run's table
        name = get_setting(config, f"{part}.name")
        params[f"{part}.name"] = name
        if name and isinstance(config.get(name), Mapping):
            params.update(_flat(name, config[name]))
    if section == "train":
        params["train.epochs"] = config["train"]["epochs"]
    else:
        params.update(_flat(section, config[section]))
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

    def __init__(self, config: Mapping, run_dir: Path, model_name: str, section: str = "train"):
        """``section``: the table holding ``experiment_name`` and ``run_name`` (``train_stream`` for a stream)."""
        self.section = section
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
            name = config[self.section]["experiment_name"]
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            _end_orphans(client, experiment_id, run_dir.parent)
            run_name = get_setting(config, f"{self.section}.run_name") or run_dir.name
            run = client.create_run(experiment_id, run_name=run_name)
            self.mlflow, self.run_id = client, run.info.run_id
            from mlflow.entities import Param

            tracked = tracked_params(config, model_name, self.section)
            params = [Param(k, str(v)[:6000]) for k, v in tracked.items()]
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

    def log_steps(self, steps: list[tuple[int, Mapping[str, float]]]) -> None:
        """Metrics of many steps (a stream's batches) in one MLflow call per 1000 values."""
        if not steps:
            return
        if self.mlflow is not None:
            try:
                import time

                from mlflow.entities import Metric

                now = int(time.time() * 1000)
                metrics = [
                    Metric(k, float(v), now, step) for step, values in steps for k, v in values.items()
                ]
                for start in range(0, len(metrics), 1000):
                    self.mlflow.log_batch(self.run_id, metrics=metrics[start : start + 1000])
            except Exception as error:  # any tracking failure must not stop training
                self._warn("MLflow logging", error)
        if self.tensorboard is not None:
            try:
                for step, values in steps:
                    for key, value in values.items():
                        self.tensorboard.add_scalar(key, float(value), step)
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


class IndexingLog:
    """TensorBoard scalars of a ``save_to_database``, under the published Hyrax's tags: per batch
    ``vector_db/batch_insertion_time``, ``vector_db/vectors_per_batch`` and
    ``vector_db/insertion_rate_vectors_per_second`` (step: the batch, from 1); at the end
    ``vector_db/total_insertion_time``, ``vector_db/total_batches`` and
    ``vector_db/average_batch_insertion_time`` (step 1). Written to ``<index directory>/tensorboard``; a
    failure is a :class:`TrackingWarning`, never a failed save.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder, IndexingLog(Path(folder)) as log:
    ...     log.batch(0.5, 100)
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory) / "tensorboard"
        self.writer = None
        self.batches, self.seconds = 0, 0.0

    def __enter__(self) -> IndexingLog:
        try:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(logdir=str(self.directory))
        except Exception as error:  # tracking never stops a save
            self._warn("set-up", error)
        return self

    def _warn(self, what: str, error: Exception) -> None:
        warnings.warn(
            f"TensorBoard {what} for save_to_database failed: {error}", TrackingWarning, stacklevel=3
        )
        self.writer = None

    def _scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        try:
            for key, value in values.items():
                self.writer.add_scalar(f"vector_db/{key}", float(value), step)
        except Exception as error:  # tracking never stops a save
            self._warn("logging", error)

    def batch(self, seconds: float, vectors: int) -> None:
        """One insertion of ``vectors`` vectors that took ``seconds``."""
        self.batches += 1
        self.seconds += seconds
        rate = vectors / seconds if seconds > 0 else 0.0
        self._scalars(
            self.batches,
            {
                "batch_insertion_time": seconds,
                "vectors_per_batch": vectors,
                "insertion_rate_vectors_per_second": rate,
            },
        )

    def __exit__(self, *exc) -> None:
        average = self.seconds / self.batches if self.batches else 0.0
        self._scalars(
            1,
            {
                "total_insertion_time": self.seconds,
                "total_batches": self.batches,
                "average_batch_insertion_time": average,
            },
        )
        if self.writer is not None:
            self.writer.close()
