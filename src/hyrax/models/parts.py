"""The parts of training a model gets from the config: its criterion, optimizer and scheduler
(``[criterion]``, ``[optimizer]``, ``[scheduler]`` and the keyword tables named by their class paths),
stated once at the start of a training with where each came from, and a check that the criterion fits
what the model compares (a classification loss given a reconstruction is a :class:`CriterionWarning`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from hyrax.config import get_setting
from hyrax.errors import HyraxWarning, PluginError
from hyrax.plugins import import_object


def _class_with_kwargs(config: Mapping, section: str) -> tuple[Any, dict] | None:
    name = get_setting(config, f"{section}.name")
    if name is None:
        return None
    try:
        cls = import_object(name, section)
    except PluginError as error:
        raise PluginError(f'[{section}] name = "{name}": {error}') from None
    kwargs = dict(config.get(name, {})) if isinstance(config.get(name, {}), Mapping) else {}
    return cls, kwargs


#: Families of keyword-argument tables: (section whose name selects one, prefix of its class paths).
_FAMILIES = (
    ("scheduler", "torch.optim.lr_scheduler."),
    ("optimizer", "torch.optim."),
    ("criterion", "torch.nn."),
)


def unused_class_settings(config: Mapping) -> list[str]:
    """Messages for keyword tables set for a class that is not the one in use, e.g.
    ``["torch.optim.Adam"] lr = 0.001`` while ``optimizer.name`` is the default SGD (a config written for
    earlier releases of this Hyrax, whose default optimizer was Adam, would otherwise change nothing,
    silently)."""
    from hyrax.config.manager import DEFAULT_CONFIG_PATH, read_toml

    defaults = read_toml(DEFAULT_CONFIG_PATH)
    messages = []
    for table, values in config.items():
        if "." not in table or not isinstance(values, Mapping):
            continue
        for section, prefix in _FAMILIES:
            if not table.startswith(prefix):
                continue
            chosen = get_setting(config, f"{section}.name")
            if table != chosen and dict(values) != dict(defaults.get(table, {})):
                messages.append(
                    f'["{table}"] is set ({", ".join(f"{k} = {v!r}" for k, v in values.items())}), but '
                    f'{section}.name = "{chosen}": those settings are unused. Set {section}.name = "{table}" '
                    f"to use them."
                )
            break
    return messages


#: Verbs that only run a model forward: no optimizer or scheduler is made for them. The first torch
#: optimizer made in a process imports torch._dynamo (torch.optim.Optimizer.__init__ is wrapped in
#: torch._disable_dynamo): 1-3 s that a small infer, infer_stream or to_onnx run noticed, for a part it never uses.
FORWARD_ONLY_VERBS = frozenset({"infer", "infer_stream", "to_onnx"})


def attach_training_parts(model, config: Mapping) -> None:
    """Give ``model`` an optimizer, criterion and scheduler from the config, unless it has its own (which
    of the two each came from is recorded for :func:`training_parts`). While a forward-only verb runs
    (:data:`FORWARD_ONLY_VERBS`) the optimizer and scheduler are None."""
    from hyrax.context import get_context

    own = {name for name in ("criterion", "optimizer", "scheduler") if getattr(model, name, None) is not None}
    forward_only = get_context().get("verb") in FORWARD_ONLY_VERBS
    if "criterion" not in own:
        made = _class_with_kwargs(config, "criterion")
        model.criterion = made[0](**made[1]) if made else None
        if model.criterion is not None:
            _watch_for_reconstruction(model, config)
    if forward_only:
        for name in {"optimizer", "scheduler"} - own:
            setattr(model, name, None)
    elif "optimizer" not in own:
        made = _class_with_kwargs(config, "optimizer")
        parameters = [p for p in model.parameters() if p.requires_grad]
        model.optimizer = made[0](parameters, **made[1]) if made and parameters else None
    if "scheduler" not in own and not forward_only:
        made = _class_with_kwargs(config, "scheduler")
        model.scheduler = (
            made[0](model.optimizer, **made[1]) if made and model.optimizer is not None else None
        )
    model._hyrax_own_parts = frozenset(own)


class CriterionWarning(HyraxWarning):
    """The configured loss does not fit what the model compares (a classification loss on a
    reconstruction); the message names the setting to change."""


#: Classification losses: given float targets shaped like the output, they do not measure a reconstruction.
_CLASSIFICATION_LOSSES = ("CrossEntropyLoss", "NLLLoss")


def _watch_for_reconstruction(model, config: Mapping) -> None:
    """Check the first call of a configured classification criterion: float targets of the output's own
    shape (``self.criterion(decoded, x)``) are a reconstruction, which it does not measure: warn, naming
    ``[criterion] name``. The hook (public ``register_forward_pre_hook``) removes itself after one call."""
    criterion = model.criterion
    if type(criterion).__name__ not in _CLASSIFICATION_LOSSES or not hasattr(
        criterion, "register_forward_pre_hook"
    ):
        return
    model_name = type(model).__name__

    def check(module, args):
        handle.remove()
        if len(args) >= 2 and _looks_like_reconstruction(args[0], args[1]):
            warnings.warn(
                f"{model_name} compares its output with float targets of the same shape "
                f"{tuple(args[1].shape)} (a reconstruction, such as self.criterion(decoded, x)) using "
                f"{_describe_part(module, 'criterion', config, own=False)}: a classification loss, which does "
                f'not measure how close a reconstruction is. Set [criterion] name = "torch.nn.MSELoss" '
                f'(h.set_config("criterion.name", "torch.nn.MSELoss")), or give the model its own '
                f"self.criterion.",
                CriterionWarning,
                stacklevel=2,
            )

    handle = criterion.register_forward_pre_hook(check)


def _looks_like_reconstruction(output: Any, target: Any) -> bool:
    """Float targets shaped like the output that are not class probabilities (values in [0, 1] summing
    to 1 over the class dimension, which CrossEntropyLoss takes as soft labels)."""
    import torch

    if not (isinstance(output, torch.Tensor) and isinstance(target, torch.Tensor)):
        return False
    if not target.is_floating_point() or target.shape != output.shape or target.ndim < 2:
        return False
    with torch.no_grad():
        probabilities = bool(
            (target.min() >= 0)
            & (target.max() <= 1)
            & torch.allclose(target.sum(1), torch.ones(()), atol=1e-3)
        )
    return not probabilities


def _public_name(obj: Any) -> str:
    """``torch.nn.CrossEntropyLoss`` rather than ``torch.nn.modules.loss.CrossEntropyLoss``."""
    import torch

    cls = type(obj)
    for module in (torch.nn, torch.optim, torch.optim.lr_scheduler):
        if getattr(module, cls.__name__, None) is cls:
            return f"{module.__name__}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe_part(obj: Any, section: str, config: Mapping, own: bool) -> str:
    """``torch.nn.CrossEntropyLoss (the default, [criterion] name)`` and the like."""
    from hyrax.config.manager import DEFAULT_CONFIG_PATH, read_toml

    if own:
        return f"{_public_name(obj)} (set by the model itself)"
    name = get_setting(config, f"{section}.name")
    kwargs = config.get(name, {}) if isinstance(config.get(name, {}), Mapping) else {}
    arguments = f"({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})" if kwargs else ""
    default = read_toml(DEFAULT_CONFIG_PATH).get(section, {}).get("name")
    why = f"the default, [{section}] name" if name == default else f'[{section}] name = "{name}"'
    return f"{_public_name(obj)}{arguments} ({why})"


def training_parts(model, config: Mapping) -> str:
    """One line stating the criterion, optimizer and scheduler a training uses, and where each came from:
    ``criterion: torch.nn.MSELoss (the model's own; [criterion] name is not used); optimizer: ...``."""
    own = getattr(model, "_hyrax_own_parts", frozenset())
    parts = []
    for section in ("criterion", "optimizer", "scheduler"):
        obj = getattr(model, section, None)
        if obj is None:
            if section != "scheduler":
                parts.append(f"{section}: none")
            continue
        parts.append(f"{section}: {_describe_part(obj, section, config, section in own)}")
    return "; ".join(parts)


# -- saving and loading ------------------------------------------------------------------------------
