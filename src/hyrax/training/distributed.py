"""torch.distributed for training and inference: which process this is, and keeping ranks in step.

Launch with torchrun (``torchrun --nproc_per_node=2 -m hyrax train -c config.toml``) or srun under Slurm;
``general.distributed = true`` without a launcher warns and runs in this one process. Training wraps the
model in torch's DistributedDataParallel (:class:`DataParallel`), with the model's own ``train_batch``
unchanged.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_LAUNCHER_VARIABLES = ("WORLD_SIZE", "SLURM_NTASKS")


@dataclass
class Distribution:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_distributed() -> bool:
    """True when torchrun (or Slurm with several tasks) started this process as one of many."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def setup(config: Mapping) -> Distribution:
    """Join the process group when launched as one of several processes.

    Every distributed entry (train, train --resume, infer, infer --resume) comes through here, so a task
    that srun started gets torch.distributed's variables from Slurm's the same way on each
    (:func:`hyrax.training.slurm.apply`); Ignite's own Slurm rule, which would otherwise run, ignores a
    MASTER_ADDR or MASTER_PORT exported alone."""
    from hyrax.training import slurm

    slurm.apply()
    wanted = config["general"]["distributed"] is True
    if not launched_distributed():
        if wanted:  # a notebook, as the published Hyrax allows: this one process does the work
            warnings.warn(
                "general.distributed = true, but this process was not started by a distributed launcher: "
                "it runs alone. For N processes start it with `torchrun --nproc_per_node=N -m hyrax <verb> "
                "-c CONFIG` (or srun under Slurm).",
                UserWarning,
                stacklevel=4,
            )
        return Distribution()
    import ignite.distributed as idist
    import torch

    if idist.get_world_size() == 1 or not torch.distributed.is_initialized():
        idist.initialize("nccl" if torch.cuda.is_available() else "gloo")
    return Distribution(rank=idist.get_rank(), world_size=idist.get_world_size())


def refuse_several_processes(verb: str) -> None:
    """``verb`` runs in one process: a ConfigError when torchrun or srun started this one as one of
    several (each would otherwise do the whole work again, in a run directory of its own)."""
    if not launched_distributed():
        return
    from hyrax.errors import ConfigError

    if "TORCHELASTIC_RUN_ID" in os.environ:
        started = f"torchrun (WORLD_SIZE={os.environ.get('WORLD_SIZE')})"
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        started = f"srun (SLURM_NTASKS={os.environ['SLURM_NTASKS']})"
    else:
        started = f"a launcher (WORLD_SIZE={os.environ.get('WORLD_SIZE')})"
    raise ConfigError(
        f"hyrax {verb} runs in one process, but {started} started this one as one of several. Start it once: "
        f"`srun --ntasks=1 hyrax {verb} ...` in a Slurm job (never bare in a batch script of several tasks), "
        f"or without torchrun. `hyrax infer` (and train) share their work across processes under torchrun "
        f"or srun."
    )


def broadcast_object(value: Any, distribution: Distribution) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not distribution.active:
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sum_across(values: list[float], distribution: Distribution) -> list[float]:
    """Element-wise sum of ``values`` over all ranks."""
    if not distribution.active:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


class DataParallel:
    """The model under torch's DistributedDataParallel, with the model's own ``train_batch`` unchanged.

    DDP synchronises gradients through the module it wraps: its forward prepares the reducer, whose
    hooks then all-reduce the gradients in buckets while the backward pass runs. A Hyrax model calls
    itself inside ``train_batch`` (``self(x)`` or ``self.forward(x)``), so for the length of one
    training step the instance's ``forward`` is pointed at the DDP wrapper; the wrapper's own call of
    the module comes back to the class's forward. Nothing else of the model changes: the user's object
    is still what the loop, the checkpoints and the hooks see.

    ``train.find_unused_parameters``: "auto" (DDP's static graph: the first step learns which
    parameters get no gradient, also parameters used outside ``forward`` and several forwards in one
    step), true (searched every step, for a model whose used parameters change between steps; every
    parameter must then be used inside ``forward``), false (every parameter must get a gradient every
    step). ``train.sync_batchnorm``: BatchNorm layers as SyncBatchNorm (statistics over all processes;
    torch does this on GPUs only).
    """

    def __init__(self, model, config: Mapping, device):
        import torch
        from torch.nn.parallel import DistributedDataParallel

        from hyrax.config import get_setting

        if get_setting(config, "train.sync_batchnorm"):
            if device.type == "cpu":
                from hyrax.errors import ConfigError

                raise ConfigError(
                    "train.sync_batchnorm = true, but these processes train on the CPU: torch's SyncBatchNorm "
                    "runs on GPUs only. Set train.sync_batchnorm = false (each process then normalises its "
                    "own batch; the running statistics are rank 0's, broadcast at every step)."
                )
            if isinstance(model, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d | torch.nn.BatchNorm3d):
                raise TypeError("train.sync_batchnorm: the model itself is a BatchNorm layer")
            # Converts the BatchNorm layers inside the model in place (the model object stays the same).
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        unused = config["train"].get("find_unused_parameters", "auto")
        self.model = model
        self.wrapper = DistributedDataParallel(
            model,
            # "cuda" with no index is the process's current GPU (set to its local rank when the group began)
            device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None,
            find_unused_parameters=unused is True,
            static_graph=unused == "auto",
        )
        self.forward_calls = 0
        self._inside = False

    def train_batch(self, tensors):
        """``model.train_batch(tensors)`` with the model's forward going through DDP."""
        model = self.model
        own = model.__dict__.get("forward")  # a forward set on the instance (rare) is kept
        plain = own if own is not None else type(model).forward.__get__(model)

        def forward(*args, **kwargs):
            if self._inside:  # DDP calling the module it wraps: the model's real forward
                return plain(*args, **kwargs)
            self._inside = True
            self.forward_calls += 1
            try:
                return self.wrapper(*args, **kwargs)
            finally:
                self._inside = False

        model.forward = forward
        try:
            output = model.train_batch(tensors)
        finally:
            if own is None:
                del model.forward
            else:
                model.forward = own
        # Gradients without a single DDP forward: a train_batch that computes its loss from submodules
        # only. DDP would not have averaged them, and the processes' weights would drift apart.
        if not self.forward_calls and any(p.grad is not None for p in model.parameters()):
            from hyrax.training.loop import TrainingError

            raise TrainingError(
                f"{type(model).__name__}.train_batch never called the model itself (self(x) or self.forward(x)): "
                "under torchrun the gradients are averaged across processes by DistributedDataParallel, which "
                "wraps the model's forward. Compute the loss from self(...) in train_batch."
            )
        return output
