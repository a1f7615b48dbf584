"""torch.distributed for training and inference: which process this is, and keeping ranks in step.

Launch with torchrun (``torchrun --nproc_per_node=2 -m hyrax train -c config.toml``) or srun under Slurm;
``general.distributed = true`` asks for distribution explicitly and is an error when no launcher set
it up. Gradients are averaged across processes when the model steps its optimizer, so a model's own
``train_batch`` works unchanged (its optimizer is wrapped; the model is not).
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
    """Join the process group when launched as one of several processes."""
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


def synchronize_parameters(model, distribution: Distribution) -> None:
    """Start every rank from rank 0's weights."""
    if not distribution.active:
        return
    import torch.distributed as dist

    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


class GradientAveragingOptimizer:
    """Wraps an optimizer: ``step()`` first averages every gradient over the ranks. Everything else is
    the wrapped optimizer's (``zero_grad``, ``param_groups``, ``state_dict``...)."""

    def __init__(self, optimizer, world_size: int):
        self.optimizer = optimizer
        self.world_size = world_size

    def step(self, *args, **kwargs):
        import torch
        import torch.distributed as dist

        grads = [
            p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None
        ]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()
        return self.optimizer.step(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.optimizer, name)
