"""The order training visits its objects: a fresh permutation every epoch, or balanced draws by label.

Both are plain iterables of row indices with ``set_epoch(n)``, usable as a torch DataLoader ``sampler``
(torch is not imported here). An epoch's order is one numpy array (8 bytes an object), handed out in
chunks: never a Python list of every index (~36 bytes each).

>>> sampler = EpochSampler(np.arange(5), seed=1)
>>> sampler.set_epoch(0); first = list(sampler)
>>> sampler.set_epoch(1); second = list(sampler)
>>> sorted(first) == sorted(second) == [0, 1, 2, 3, 4] and first != second
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from hyrax.config import get_setting
from hyrax.errors import ConfigError


class EpochSampler:
    """Every index once per epoch, in a permutation seeded by (seed, epoch); in order if not shuffled.

    Each iteration is one epoch: iterating again moves to the next epoch by itself, so a training loop
    that iterates its loader once per epoch gets a fresh order without telling the sampler. A resumed
    run calls ``set_epoch(first_epoch)`` once.
    """

    def __init__(self, indices: np.ndarray, seed: int, shuffle: bool = True):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        return self.indices[np.random.default_rng([self.seed, self.epoch]).permutation(len(self.indices))]

    def take_epoch(self) -> np.ndarray:
        """This epoch's order; the next call gives the next epoch's."""
        order = self.order()
        self.epoch += 1
        return order

    def __iter__(self) -> Iterator[int]:
        return chunked(self.take_epoch())

    def __len__(self) -> int:
        return len(self.indices)


def chunked(order: np.ndarray, size: int = 65536) -> Iterator[int]:
    """The indices of ``order`` as Python ints, converted a chunk at a time."""
    for start in range(0, len(order), size):
        yield from order[start : start + size].tolist()


class ShardedSampler:
    """One process's share of another sampler's order, for distributed training.

    The order is padded (by repeating its start) to a multiple of the number of processes, so every
    process runs the same number of batches; process ``rank`` takes every ``world_size``-th index.
    """

    def __init__(self, sampler, rank: int, world_size: int, pad: bool = True):
        self.sampler, self.rank, self.world_size, self.pad = sampler, rank, world_size, pad

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        take = getattr(self.sampler, "take_epoch", None)
        order = take() if callable(take) else np.fromiter(iter(self.sampler), dtype=np.int64)
        if self.pad and len(order) % self.world_size:
            order = np.concatenate([order, order[: self.world_size - len(order) % self.world_size]])
        return chunked(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        total = len(self.sampler)
        if self.pad:
            return -(-total // self.world_size)
        return len(range(self.rank, total, self.world_size))


class BalancedSampler(EpochSampler):
    """As many draws per epoch as there are indices, with replacement, so that each label's share of
    the draws is its target share."""

    def __init__(self, indices: np.ndarray, labels: np.ndarray, shares: Mapping[str, float], seed: int):
        super().__init__(indices, seed)
        labels = np.asarray(labels).astype(str)
        values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if shares:
            unknown = sorted(set(shares) - set(values))
            if unknown:
                raise ConfigError(
                    f"[balance.distribution] names label(s) {', '.join(unknown)} that no training object has; "
                    f"labels found: {', '.join(values)}."
                )
            target = np.array([float(shares.get(v, 0.0)) for v in values])
        else:
            target = np.ones(len(values))
        if target.sum() <= 0:
            raise ConfigError("[balance.distribution] shares must add up to more than 0.")
        weights = (target / target.sum() / counts)[inverse]
        self.probabilities = weights / weights.sum()

    def order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.choice(self.indices, size=len(self.indices), replace=True, p=self.probabilities)


def label_aliases(config: Mapping) -> dict[str, Any]:
    """The published ``[label]`` alias table: ``name = raw value`` (``cat = 0``), every key of ``[label]``
    but ``field``. ``[balance.distribution]`` then names classes by these names. Raw values must differ."""
    aliases = {str(k): v for k, v in config.get("label", {}).items() if k != "field"}
    seen: dict[str, str] = {}
    for name, value in aliases.items():
        if str(value) in seen:
            raise ConfigError(
                f"[label] {seen[str(value)]} and {name} both name the value {value!r}: each alias must name "
                "its own value of label.field."
            )
        seen[str(value)] = name
    return aliases


def aliased(labels: np.ndarray, aliases: Mapping[str, Any], field: str) -> np.ndarray:
    """``labels`` (raw values of ``field``) as their ``[label]`` names; a value without one is "" (never
    drawn when balancing), said once with its count."""
    import warnings

    by_value = {str(value): name for name, value in aliases.items()}
    raw = np.asarray(labels).astype(str)
    values, inverse = np.unique(raw, return_inverse=True)
    names = np.array([by_value.get(v, "") for v in values], dtype=object)
    missing = [str(v) for v in values if v not in by_value]
    if missing:
        counts = {v: int((raw == v).sum()) for v in missing[:5]}
        warnings.warn(
            f"label.field '{field}' has value(s) without a name in [label]: "
            + ", ".join(f"{v!r} ({n} objects)" for v, n in counts.items())
            + (" ..." if len(missing) > 5 else "")
            + ". Those objects are not drawn when balancing: name them in [label] to use them.",
            UserWarning,
            stacklevel=3,
        )
    return names[inverse].astype(str)


def training_sampler(config: Mapping, provider, indices: np.ndarray, seed: int) -> EpochSampler:
    """The sampler ``[train] shuffle`` and ``[balance]`` ask for, over ``indices`` of ``provider``.

    Balancing is on with ``balance.enabled``, or when ``[balance.distribution]`` gives target shares (as
    the published ``balance.field`` with a distribution does). With a ``[label]`` alias table the
    distribution names classes by their aliases."""
    shares = {str(k): v for k, v in config["balance"]["distribution"].items()}
    if not config["balance"]["enabled"] and not shares:
        return EpochSampler(indices, seed, shuffle=bool(config["train"]["shuffle"]))
    label_field = get_setting(config, "label.field")
    if label_field is None:
        raise ConfigError(
            "Balanced sampling (balance.enabled, or a [balance.distribution]) needs label.field (published: "
            "balance.field): the field that holds each object's label."
        )
    labels = provider.datasets[provider.primary].column(label_field)[indices]
    aliases = label_aliases(config)
    if aliases:
        unnamed = sorted(set(shares) - set(aliases))
        if unnamed:
            raise ConfigError(
                f"[balance.distribution] names {', '.join(unnamed)}, not in the [label] alias table "
                f"({', '.join(aliases)}): with [label] aliases, name every class by its alias."
            )
        labels = aliased(labels, aliases, label_field)
        if not shares:  # equal shares among the named classes only
            shares = dict.fromkeys(sorted(set(labels) - {""}), 1.0)
        shares = {**shares, "": 0.0} if "" in set(labels) else shares
    return BalancedSampler(indices, labels, shares, seed)
