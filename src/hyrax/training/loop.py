"""The training loop: the model writes ``train_batch``; Hyrax owns everything around it.

Built on PyTorch Ignite's ``Engine`` (public API only). Per epoch: the train group in a fresh order,
a validation pass whose loss is the epoch mean, the learning-rate scheduler step, the latest checkpoint
and the best one, early stopping, and the epoch's metrics to MLflow, TensorBoard and the log.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.datasets.loader import Skips, loader_from_config, point_to_prepare
from hyrax.datasets.provider import DataProvider
from hyrax.datasets.sampling import EpochSampler, ShardedSampler, training_sampler
from hyrax.datasets.splits import compute_splits, split_seed
from hyrax.errors import ConfigError, DataError, HyraxError, HyraxWarning
from hyrax.faults import fault_point
from hyrax.models.model import ModelContractError, check_model_contract, prepared_problem, to_torch
from hyrax.plugins import MODELS
from hyrax.training.checkpoints import BEST, copy_as_best, latest_checkpoint, load_checkpoint, save_checkpoint
from hyrax.training.distributed import DataParallel, Distribution, sum_across

logger = logging.getLogger(__name__)


def _run_seed(config: Mapping, distribution: Distribution) -> int:
    """The run's seed: that of the run a resume continues; else data_set.seed (split.rng_seed); else
    drawn at random, by rank 0 for every rank (each rank must split and shuffle alike)."""
    from hyrax.training.checkpoints import checkpoint_seed
    from hyrax.training.distributed import broadcast_object

    seed = checkpoint_seed(config)
    if seed is None:
        seed = split_seed(config)
    return int(broadcast_object(seed, distribution)) if distribution.active else seed


class TrainingError(HyraxError, RuntimeError):
    """Training cannot go on (a NaN loss, a train_batch without a loss...); the message says where."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT); the message says what was saved and how to continue."""


class BatchSizeWarning(HyraxWarning):
    """A batch larger than the data it is drawn from: one optimiser step per epoch."""


class _EngineLog(logging.LoggerAdapter):
    """Ignite's engine messages, all at debug level in Hyrax's log. Ignite logs an error it is about to
    re-raise ("Engine run is terminating due to exception: ..."), which printed a data error twice more
    before Hyrax reported it, and a bare line for Ctrl-C; the error itself is reported once, by Hyrax."""

    def log(self, level, msg, *args, **kwargs):
        self.logger.debug(msg, *args, **kwargs)


def enter_run(config: Mapping, run_dir: Path, distribution: Distribution) -> None:
    """Record in the verb's run context (hyrax.context) the config this run really uses (a resumed run's
    own) and where it writes; nothing outside a verb (a library caller makes no run context)."""
    from hyrax.context import record_in_run

    record_in_run(
        config=config, results_dir=run_dir, rank=distribution.rank, world_size=distribution.world_size
    )


#: Model methods called with no arguments when an epoch's batches are done, as published: after the
#: training batches (before validation), after the validation batches, after the test batches. Every
#: process calls its own (the published Hyrax refuses them under distribution).
EPOCH_HOOKS = ("train_post_epoch", "validate_post_epoch", "test_post_epoch")


def call_epoch_hook(model, name: str) -> None:
    """Call ``model.<name>()`` when the model has it (one of :data:`EPOCH_HOOKS`)."""
    hook = getattr(model, name, None)
    if callable(hook):
        hook()


def model_class(config: Mapping):
    """The class ``model.name`` names; unset is an error that lists the models."""
    from hyrax.models import load_builtins

    load_builtins()
    name = get_setting(config, "model.name")
    if name is None:
        raise ConfigError(
            f'model.name is not set: say which model to use, e.g. model.name = "HyraxAutoencoder". Models: '
            f"{', '.join(MODELS.names())} (or the import path of your own @hyrax_model class)."
        )
    cls = MODELS.get(name)
    configure = getattr(cls, "configure_inputs", None)
    if callable(configure):  # a model whose prepare_inputs reads settings (HyraxTs2Vec): this run's
        configure(config)
    return cls


def first_readable(provider: DataProvider, index: int, tries: int = 1000) -> dict:
    """A batch of one object: the one at ``index``, or (when it is skipped as unreadable) the first
    readable one after it."""
    for row in range(int(index), min(len(provider), int(index) + tries)):
        try:
            batch = provider.collate([provider[row]])
        except DataError as error:  # the first data error of the run: say how to see them all
            point_to_prepare(error)
            raise
        if batch:
            return batch
    raise TrainingError(
        f"Objects {index} to {min(len(provider), index + tries) - 1} of the data could not be read (all skipped); "
        f"cannot size the model. Check the data (see the warnings above)."
    )


def build_model(config: Mapping, provider: DataProvider, index: int = 0):
    """Construct the configured model, sized by one prepared sample of ``provider``; also return that
    sample's batch (for the contract check)."""
    cls = model_class(config)
    batch = first_readable(provider, int(index))
    prepare = getattr(cls, "prepare_inputs", None)
    if not callable(prepare):
        raise ModelContractError(
            f"Model {cls.__name__} has no prepare_inputs. Add:\n    @staticmethod\n    def prepare_inputs(batch): "
            f"return batch['data']['image']  # numpy in, numpy out"
        )
    data_sample = prepare(batch)
    problem = prepared_problem(data_sample)
    if problem:
        raise ModelContractError(f"Model {cls.__name__}: {problem}")
    return cls(config, data_sample=data_sample), batch


def _loss_of(output: Any, model, epoch: int, iteration: int, stage: str) -> float:
    if not isinstance(output, Mapping) or "loss" not in output:
        got = sorted(output) if isinstance(output, Mapping) else type(output).__name__
        raise TrainingError(
            f"{type(model).__name__}.{stage} returned {got} without a 'loss': return a dict such as "
            f"{{'loss': loss.item()}}."
        )
    loss = float(output["loss"])
    if not math.isfinite(loss):
        raise TrainingError(
            f"Training stopped: the {stage} loss became {loss} at epoch {epoch}, batch {iteration}. Check the data for "
            f"NaN/inf (data_set.nan_mode), lower the learning rate, or look at the model's last layers. The last "
            f"complete epoch's checkpoint is kept; no NaN result was saved as best."
        )
    return loss


class _FrozenOptimizer:
    """Stands in for a model's optimizer while its train_batch computes a validation loss."""

    def zero_grad(self, *args, **kwargs):
        pass

    def step(self, *args, **kwargs):
        pass


class EpochMeans:
    """Sample-weighted means of a stage's numeric outputs over one epoch, summed over ranks."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, output: Mapping, size: int) -> None:
        for key, value in output.items():
            if isinstance(value, int | float | np.floating) and not isinstance(value, bool):
                self.sums[key] = self.sums.get(key, 0.0) + float(value) * size
        self.count += size

    def means(self, distribution: Distribution, prefix: str) -> dict[str, float]:
        keys = sorted(self.sums)
        totals = sum_across([self.sums[k] for k in keys] + [float(self.count)], distribution)
        count = totals[-1] or 1.0
        return {f"{prefix}{k}": totals[i] / count for i, k in enumerate(keys)}


class Training:
    """One training run in ``run_dir`` (a path on every rank; only rank 0 writes)."""

    def __init__(self, config: Mapping, run_dir: Path, distribution: Distribution):
        import torch

        self.config, self.run_dir, self.distribution = config, Path(run_dir), distribution
        enter_run(config, run_dir, distribution)
        from hyrax.models.parts import unused_class_settings

        for message in unused_class_settings(config) if distribution.is_main else []:
            warnings.warn(message, UserWarning, stacklevel=3)
        # Objects skipped by data_set.on_bad_object = "skip", each counted once (rank 0 lists them).
        self.skips = Skips(
            self.run_dir / "skipped_objects.csv" if distribution.is_main else None, distinct=True
        )
        self.seed = _run_seed(config, distribution)
        torch.manual_seed(self.seed)
        groups = [g for g in ("train", "validate") if g in config.get("data_request", {})]
        if "train" not in groups:
            raise ConfigError(
                "Training needs a [data_request.train] group. Groups: "
                f"{', '.join(config.get('data_request', {})) or '(none)'}."
            )
        self.providers = {g: DataProvider(config, g) for g in groups}
        # A test group is split off now too (and its rows saved), so that `test` evaluates exactly the
        # objects this training never saw.
        held_out = {"test": DataProvider(config, "test")} if "test" in config.get("data_request", {}) else {}
        self.splits = compute_splits(config, {**self.providers, **held_out}, self.seed)
        if distribution.is_main:
            self.splits.save(self.run_dir)
        self.train_indices = self.splits.indices["train"]
        if not len(self.train_indices):
            empty = len(self.providers["train"]) == 0
            raise ConfigError(
                "The train group's dataset has no objects: check its data_location and files."
                if empty
                else "The train group has no objects after splitting; check [split]."
            )
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        self.model, sample = build_model(config, self.providers["train"], self.train_indices[0])
        self.model.to(self.device)
        if distribution.is_main:  # once, at the start: what the loss and the steps are, and why
            from hyrax.models.parts import training_parts

            logger.info("training %s: %s", type(self.model).__name__, training_parts(self.model, config))
        self.start_epoch, self.best_loss = self._initial_weights()
        check_model_contract(self.model, sample)
        # Under torchrun: DDP (rank 0's weights and buffers broadcast now, gradients averaged in the
        # backward pass). The training step calls train_batch through it; validation does not.
        self.parallel = DataParallel(self.model, config, self.device) if distribution.active else None
        self.prepare = type(self.model).prepare_inputs
        self.prepare_check = None
        if distribution.is_main:
            # Saved now and run in a fresh Python on the first batch: a prepare_inputs that would fail at
            # inference in another process (a notebook global it needs) fails the run, in its first steps.
            # The fresh Python runs beside the set-up and the first batches; run() polls it at each step
            # and waits for it before the run can finish.
            from hyrax.models.model import PrepareInputsCheck, prepare_inputs_source, write_prepare_inputs

            write_prepare_inputs(self.run_dir, prepare_inputs_source(type(self.model)), config)
            self.prepare_check = PrepareInputsCheck(self.run_dir, sample, self.prepare(sample))
        from hyrax.trace import traced_model, traced_prepare  # recording only under trace=N

        traced_model(self.model)
        self.prepare = traced_prepare(self.prepare)

    def _initial_weights(self) -> tuple[int, float | None]:
        # train.resume was checked (with train.model_weights_file) before the run directory was made:
        # checkpoints.check_resumable.
        weights = get_setting(self.config, "train.model_weights_file")
        resume = get_setting(self.config, "train.resume")
        if weights is not None:
            self.model.load(weights)
            logger.info("starting from weights %s", weights)
        if resume is not None:
            path = latest_checkpoint(resume)
            state = load_checkpoint(path, self.model)
            logger.info("resuming from %s after epoch %d", path, state["epoch"])
            return state["epoch"], state["best_loss"]
        return 0, None

    # -- loaders ---------------------------------------------------------------------------------
    def _train_loader(self):
        sampler = training_sampler(self.config, self.providers["train"], self.train_indices, self.seed)
        sampler.set_epoch(self.start_epoch)
        if self.distribution.active:
            sampler = ShardedSampler(sampler, self.distribution.rank, self.distribution.world_size)
        return loader_from_config(self.config, self.providers["train"], sampler, self.skips)

    def _validate_loader(self):
        indices = self.splits.indices.get("validate")
        if indices is None or not len(indices):
            return None
        sampler: Any = EpochSampler(indices, self.seed, shuffle=False)
        if self.distribution.active:
            sampler = ShardedSampler(sampler, self.distribution.rank, self.distribution.world_size, pad=False)
        return loader_from_config(self.config, self.providers["validate"], sampler, self.skips)

    def _check_batch_size(self, loader) -> None:
        """Warn when a batch is larger than the train split (one optimiser step an epoch)."""
        batch_size = int(self.config["data_loader"]["batch_size"])
        share = len(self.train_indices)
        if self.distribution.active:
            share = -(-share // self.distribution.world_size)
        if batch_size <= share:
            return
        smaller = 2 ** max(0, int(math.log2(max(1, share // 10))))
        per_rank = " per process" if self.distribution.active else ""
        warnings.warn(
            f"data_loader.batch_size = {batch_size} is larger than the train split ({share} objects{per_rank}): "
            f"each epoch is {len(loader)} optimiser step(s), so {self.config['train']['epochs']} epochs train "
            f"little. Set data_loader.batch_size below {share}, e.g. {smaller} ({-(-share // smaller)} steps per "
            f"epoch).",
            BatchSizeWarning,
            stacklevel=3,
        )

    def _interrupted(self, epoch: int, epochs: int) -> str:
        """What an interrupted training saved and the exact command that continues it."""
        from hyrax.training.resume import continue_command

        try:
            checkpoint = latest_checkpoint(self.run_dir)
        except HyraxError:
            checkpoint = None
        if checkpoint is None:
            saved = (
                "Nothing was saved: no epoch had finished. Start it again (in the same run directory) with:"
            )
        else:
            done = int(checkpoint.stem.rsplit("_", 1)[-1])
            saved = (
                f"{'Epoch 1 is' if done == 1 else f'Epochs 1-{done} are'} saved ({checkpoint}; the best so far: {self.run_dir / BEST}); the epoch in "
                f"progress is lost. Continue from epoch {done + 1} with:"
            )
        return f"Training stopped during epoch {epoch} of {epochs}. {saved} {continue_command(self.run_dir)}"

    # -- stages ----------------------------------------------------------------------------------
    def _validate(self, loader, epoch: int) -> dict[str, float]:
        import torch

        model = self.model
        means = EpochMeans()
        own = callable(getattr(model, "validate_batch", None))
        model.eval()
        saved = getattr(model, "optimizer", None)
        if not own:  # fall back on train_batch with an optimizer that does not step
            model.optimizer = _FrozenOptimizer()
        try:
            self.providers["validate"].start_epoch("train", epoch)  # the verb, as published
            for number, batch in enumerate(loader, start=1):
                tensors = to_torch(self.prepare(batch), self.device)
                if own:
                    with torch.no_grad():
                        output = model.validate_batch(tensors)
                else:
                    output = model.train_batch(tensors)
                    model.zero_grad(set_to_none=True)
                _loss_of(
                    output, model, epoch, number, "validate_batch" if own else "train_batch (validation)"
                )
                means.add(output, len(batch["object_id"]))
        finally:
            if not own:
                model.optimizer = saved
            model.train()
        return means.means(self.distribution, "validation_")

    def run(self):
        """Train for ``train.epochs`` epochs (or until early stopping); return the model."""
        from ignite.engine import Engine, Events

        config, model, distribution = self.config, self.model, self.distribution
        epochs = int(config["train"]["epochs"])
        patience = get_setting(config, "train.early_stopping_patience")
        train_loader, validate_loader = self._train_loader(), self._validate_loader()
        if distribution.is_main:
            self._check_batch_size(train_loader)
        tracker = None
        if distribution.is_main:
            from hyrax.training.tracking import Tracker

            tracker = Tracker(config, self.run_dir, type(model).__name__)
        means = EpochMeans()
        history: dict[str, Any] = {
            "best": self.best_loss,
            "train": {},
            "validate": {},
            "epochs": [],
        }

        train_batch = self.parallel.train_batch if self.parallel is not None else model.train_batch

        def step(engine, batch):
            output = train_batch(to_torch(self.prepare(batch), self.device))
            _loss_of(
                output,
                model,
                engine.state.epoch,
                engine.state.iteration - (engine.state.epoch - 1) * engine.state.epoch_length,
                "train_batch",
            )
            means.add(output, len(batch["object_id"]))
            return output

        trainer = Engine(step)
        trainer.logger = _EngineLog(logging.getLogger(f"{__name__}.engine"), {})
        stopper = None
        if patience is not None:
            from ignite.handlers import EarlyStopping

            if int(patience) < 1:
                raise ConfigError(
                    f"train.early_stopping_patience = {patience}: give the number of epochs without "
                    "improvement to allow (1 or more), or false to never stop early."
                )
            # Ignite's handler, called by hand in the epoch's handler (once the validation loss is known);
            # "min": an epoch improves when its loss is below the best so far, as a resumed run's best.
            stopper = EarlyStopping(
                int(patience), score_function=lambda _: history["monitored"], trainer=trainer, mode="min"
            )
            stopper.best_score = self.best_loss
            stopper.logger = _EngineLog(logging.getLogger(f"{__name__}.engine"), {})

        if self.prepare_check is not None:
            trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: self.prepare_check.poll())

        @trainer.on(Events.EPOCH_STARTED)
        def _start(engine):
            history["epoch_started"] = time.perf_counter()
            means.reset()
            model.train()
            self.providers["train"].start_epoch("train", engine.state.epoch)

        @trainer.on(Events.EPOCH_COMPLETED)
        def _end(engine):
            epoch = engine.state.epoch
            seconds = time.perf_counter() - history["epoch_started"]
            samples = means.count
            train_metrics = means.means(distribution, "training_")
            call_epoch_hook(model, "train_post_epoch")
            validation = {}
            if validate_loader is not None:
                validation = self._validate(validate_loader, epoch)
                call_epoch_hook(model, "validate_post_epoch")
            history["train"], history["validate"] = train_metrics, validation
            history["epochs"].append(
                {
                    "epoch": epoch,
                    **train_metrics,
                    **validation,
                    "train_seconds": seconds,
                    "train_samples": samples,
                }
            )
            scheduler = getattr(model, "scheduler", None)
            if scheduler is not None:
                scheduler.step()
            monitored = validation.get("validation_loss", train_metrics.get("training_loss"))
            history["monitored"] = monitored
            improved = history["best"] is None or monitored < history["best"]
            if improved:
                history["best"] = monitored
            if distribution.is_main:
                path = save_checkpoint(self.run_dir, model, epoch, history["best"], seed=self.seed)
                if improved:
                    copy_as_best(path)
                fault_point("train.epoch_checkpointed")
                if callable(getattr(model, "log_epoch_metrics", None)):
                    extra = model.log_epoch_metrics() or {}
                    train_metrics = {
                        **train_metrics,
                        **{k: v for k, v in extra.items() if isinstance(v, int | float)},
                    }
                tracker.log_epoch(epoch, {**train_metrics, **validation})
                logger.info(
                    "epoch %d/%d: %s",
                    epoch,
                    epochs,
                    ", ".join(f"{k} {v:.5g}" for k, v in {**train_metrics, **validation}.items()),
                )
            if stopper is not None:  # after the checkpoint: the last epoch is saved either way
                stopper(engine)
                if engine.should_terminate:
                    logger.info("early stopping: no improvement for %d epochs", stopper.counter)

        if distribution.is_main and sys.stderr.isatty():
            from ignite.handlers import ProgressBar
            from ignite.metrics import RunningAverage

            RunningAverage(output_transform=lambda output: output["loss"]).attach(trainer, "loss")
            ProgressBar(persist=False).attach(trainer, metric_names=["loss"])
        if self.start_epoch:
            trainer.load_state_dict(
                {"epoch": self.start_epoch, "max_epochs": epochs, "epoch_length": len(train_loader)}
            )
        status = "FAILED"
        try:
            if self.start_epoch < epochs:
                trainer.run(train_loader, max_epochs=epochs)
            if self.prepare_check is not None:
                self.prepare_check.wait()
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise TrainingInterrupted(self._interrupted(trainer.state.epoch, epochs)) from None
        finally:
            if self.prepare_check is not None:
                self.prepare_check.close()
            if tracker is not None:
                tracker.close(status)
        # Also under the names the published Hyrax uses (its metrics are the batch methods' own keys:
        # final_validation_metrics["loss"]).
        model.final_training_metrics = _with_plain_names(history["train"], "training_")
        model.final_validation_metrics = _with_plain_names(history["validate"], "validation_")
        model.skipped = int(sum_across([float(self.skips.count)], distribution)[0])
        if model.skipped and distribution.is_main:
            logger.warning("training: %s", self.skips.summary())
        model.training_history = history["epochs"]
        if distribution.is_main:
            weights = self.run_dir / config["train"]["weights_filename"]
            model.save(weights)
            logger.info("final weights: %s (best checkpoint: %s)", weights, self.run_dir / BEST)
        return model


def _with_plain_names(metrics: dict, prefix: str) -> dict:
    """``{"validation_loss": x}`` -> ``{"validation_loss": x, "loss": x}``."""
    plain = {key.removeprefix(prefix): value for key, value in metrics.items() if key.startswith(prefix)}
    return {**plain, **metrics}
