"""Batches of a provider through a torch DataLoader, as numpy.

Worker processes hand batches to the main process. Numpy arrays would be pickled through a pipe (a
copy of every byte, slowly); torch tensors travel through shared memory. So, inside the loader only,
a worker stacks same-shape arrays with torch's public ``default_collate`` (which writes the batch
straight into shared memory) and wraps other numeric arrays as tensors without a copy; the main process
unwraps them without a copy. Callers see numpy, as everywhere else in Hyrax.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np


def _stack_shared(arrays: list[np.ndarray]) -> Any:
    """Stack in a worker process straight into shared memory (torch's default_collate does that)."""
    import torch
    from torch.utils.data import default_collate

    if arrays[0].dtype.kind in "biuf" and arrays[0].dtype.isnative:
        return default_collate([torch.from_numpy(a) for a in arrays])
    return np.stack(arrays)


def _wrap(value: Any) -> Any:
    import torch

    if isinstance(value, dict):
        return {k: _wrap(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.dtype.isnative:
        return torch.from_numpy(value)
    return value


def _unwrap(value: Any) -> Any:
    import torch

    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return value


class _WrappingCollate:
    """Picklable collate for worker processes: the provider's batch, numeric arrays as tensors."""

    def __init__(self, provider):
        self.provider = provider

    def __call__(self, samples):
        return _wrap(self.provider.collate(samples, stack=_stack_shared))


class NumpyLoader:
    """Iterates numpy batches of ``provider`` in the order ``sampler`` gives (default: dataset order).

    Args:
        provider: a :class:`~hyrax.datasets.provider.DataProvider`.
        sampler: an iterable of row indices (a split's indices, an EpochSampler...).
        batch_size, num_workers: as for torch's DataLoader.
    """

    def __init__(
        self,
        provider,
        sampler: Iterable[int] | None = None,
        batch_size: int = 512,
        num_workers: int = 0,
        **kwargs,
    ):
        from torch.utils.data import DataLoader

        self.provider = provider
        self.sampler = sampler if sampler is not None else range(len(provider))
        self.num_workers = num_workers
        collate = _WrappingCollate(provider) if num_workers > 0 else provider.collate
        self.loader = DataLoader(
            provider,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            collate_fn=collate,
            persistent_workers=False,
            **kwargs,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            if not batch:  # every object of the batch was skipped
                continue
            yield _unwrap(batch) if self.num_workers > 0 else batch

    def __len__(self) -> int:
        return len(self.loader)


def loader_from_config(config, provider, sampler=None) -> NumpyLoader:
    """A :class:`NumpyLoader` with ``[data_loader]`` batch_size, num_workers and pin_memory."""
    settings = config["data_loader"]
    return NumpyLoader(
        provider,
        sampler,
        batch_size=int(settings["batch_size"]),
        num_workers=int(settings["num_workers"]),
        pin_memory=bool(settings["pin_memory"]),
    )
