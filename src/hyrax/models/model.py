"""``@hyrax_model``: turn a torch module into a Hyrax model.

The user writes the step; Hyrax owns the loop. A model is a ``torch.nn.Module`` with::

    @hyrax_model
    class MyModel(nn.Module):
        def __init__(self, config, data_sample=None):     # data_sample: prepare_inputs of one sample
            super().__init__()
            self.layer = nn.Linear(data_sample.shape[-1], 8)

        def forward(self, x):
            return self.layer(x)

        @staticmethod
        def prepare_inputs(batch):                          # numpy batch dict -> numpy (or a tuple)
            return batch["data"]["flux"].astype("float32")

        def train_batch(self, x):                           # x: torch tensors on the model's device
            self.optimizer.zero_grad()
            loss = self.criterion(self(x), torch.zeros(len(x), 8))
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.item()}

        def infer_batch(self, x):                           # one output row per object
            return self(x)

Unless the model sets them, the decorator adds ``optimizer``, ``criterion`` and ``scheduler`` from the
``[optimizer]``, ``[criterion]`` and ``[scheduler]`` names and the keyword tables named by their class
paths; and ``save(path)`` / ``load(path)``. ``prepare_inputs`` is saved beside the weights, so inference
prepares data exactly as training did. The decorator registers the class by name (notebook cells too).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyrax.errors import HyraxError
from hyrax.models.parts import attach_training_parts
from hyrax.plugins import MODELS

logger = logging.getLogger(__name__)

PREPARE_INPUTS_FILE = "prepare_inputs.py"

#: Old method names and their replacements: each still works, with a warning that names the new one.
RENAMED_METHODS = {"to_tensor": "prepare_inputs", "train_step": "train_batch"}


class ModelContractError(HyraxError, TypeError):
    """A model does not follow the @hyrax_model contract; the message says what to write."""


class WeightsError(HyraxError, ValueError):
    """Saved weights do not fit a model; the message names the layers."""


def hyrax_model(cls: type) -> type:
    """Class decorator: register a torch module as a Hyrax model (see the module documentation)."""
    import torch

    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelContractError(f"@hyrax_model decorates torch.nn.Module subclasses; {cls!r} is not one.")
    for old, new in RENAMED_METHODS.items():
        if old in cls.__dict__ and new not in cls.__dict__:
            warnings.warn(
                f"{cls.__name__}.{old} is deprecated: rename it {new} (it works for now).",
                FutureWarning,
                stacklevel=2,
            )
            setattr(cls, new, cls.__dict__[old])
    original_init = cls.__init__
    takes_sample = "data_sample" in inspect.signature(original_init).parameters

    @functools.wraps(original_init)
    def __init__(self, config, data_sample=None, *args, **kwargs):
        if takes_sample:
            original_init(self, config, *args, data_sample=data_sample, **kwargs)
        else:  # an older model: __init__(self, config, shape) or __init__(self, config)
            extra = (data_sample,) if len(inspect.signature(original_init).parameters) > 2 else ()
            original_init(self, config, *extra, *args, **kwargs)
        if not hasattr(self, "config"):
            self.config = config
        attach_training_parts(self, config)

    cls.__init__ = __init__
    for name, method in (("save", save), ("load", load)):
        if name not in cls.__dict__ and not any(name in base.__dict__ for base in cls.__mro__[1:-1]):
            setattr(cls, name, method)
    cls._hyrax_model = True
    MODELS.register(cls.__name__, cls)
    return cls


def save(self, path: str | Path) -> Path:
    """Save the weights to ``path`` and ``prepare_inputs`` beside them (``prepare_inputs.py``)."""
    import torch

    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(self.state_dict(), temporary)
        temporary.replace(path)
    except BaseException:  # a full disk: no half-written file left behind
        temporary.unlink(missing_ok=True)
        raise
    # A prepare_inputs set on this instance (model.prepare_inputs = f) is the one that is saved.
    own = self.__dict__.get("prepare_inputs")
    from hyrax.context import get_context

    # The config its prepare_inputs reads through get_context(): the run's, or this model's outside a run.
    config = get_context().get("config") or getattr(self, "config", None)
    write_prepare_inputs(path.parent, prepare_inputs_source(type(self), own), config)
    return path


def load(self, path: str | Path):
    """Load weights saved by :func:`save` (or any state_dict file); mismatches name the layers."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file '{path}' does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise WeightsError(f"Cannot read weights from '{path}': {error}.") from error
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]  # a training checkpoint
    check_state_fits(self, state, str(path))
    self.load_state_dict(state)
    saved = load_prepare_inputs(path.parent)
    if saved is not None:  # the prepare_inputs trained with these weights, on this instance
        self.prepare_inputs = saved
    return self


def check_state_fits(model, state: Mapping, source: str) -> None:
    """Raise WeightsError naming every missing, unexpected or wrongly shaped layer."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} (model {tuple(own[k].shape)}, file {tuple(state[k].shape)})"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        parts.append(f"layers of another shape: {', '.join(wrong[:8])}")
    if missing:
        parts.append(f"layers the file lacks: {', '.join(missing[:8])}")
    if unexpected:
        parts.append(f"layers the model lacks: {', '.join(unexpected[:8])}")
    hint = model.weights_hint(state) if callable(getattr(model, "weights_hint", None)) else None
    raise WeightsError(
        f"The weights in {source} do not fit {type(model).__name__}: {'; '.join(parts)}. "
        + (
            hint
            or f"Use weights trained with this model and the same [model.{type(model).__name__}] settings and "
            "data shape."
        )
    )


def prepare_inputs_source(cls: type, function: Any = None) -> str:
    """Python source of a module holding ``cls.prepare_inputs`` (or ``function``, one set on an
    instance) as a plain function, with imports for the global names it uses (modules, importable
    objects, and the source of notebook helpers)."""
    if function is None:
        function = inspect.getattr_static(cls, "prepare_inputs", None)
    function = getattr(function, "__func__", function)
    if callable(function):
        function = inspect.unwrap(function)  # a loaded one runs in its saved context: save what it runs
    header = (
        f"# prepare_inputs of {cls.__module__}.{cls.__qualname__}, saved with the weights so that inference\n"
        f"# prepares data exactly as training did.\n"
        # Annotations name types (torch.Tensor...) the function does not need to run: never evaluated.
        "from __future__ import annotations\n\nimport numpy as np\n"
    )
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        source = None
    if source is not None and getattr(function, "__name__", "") == "<lambda>":
        body = _lambda_expression(source)
        if body is not None:
            return header + "".join(_global_imports(function)) + f"\nprepare_inputs = {body}\n"
        source = None
    if source is None or not _compiles(source):
        if function is not None and getattr(function, "__qualname__", "").isidentifier():
            return header + f"from {function.__module__} import {function.__qualname__} as prepare_inputs\n"
        return (
            header
            + f"from {cls.__module__} import {cls.__qualname__}\nprepare_inputs = {cls.__qualname__}.prepare_inputs\n"
        )
    lines = [line for line in source.splitlines() if line.strip() != "@staticmethod"]
    if function.__name__ != "prepare_inputs":  # a function of another name, set on an instance
        lines.append(f"\n\nprepare_inputs = {function.__name__}")
    return header + "".join(_global_imports(function)) + "\n" + "\n".join(lines) + "\n"


def _compiles(source: str) -> bool:
    try:
        compile(source, "<prepare_inputs>", "exec")
    except SyntaxError:
        return False
    return True


def _lambda_expression(source: str) -> str | None:
    """The ``lambda ...`` expression in the source line(s) of a lambda (which also hold what surrounds
    it, e.g. ``"prepare_inputs": staticmethod(lambda batch: batch["x"]),``): the longest piece from
    ``lambda`` that is a valid expression."""
    start = source.find("lambda")
    if start < 0:
        return None
    body = source[start:].rstrip()
    for end in range(len(body), 0, -1):
        if _compiles(f"prepare_inputs = {body[:end]}\n"):
            return body[:end]
    return None


def _global_imports(function, seen: set[str] | None = None) -> list[str]:
    """An import line, a literal assignment (``SCALE = 255.0``) or helper source for each global name
    ``function`` uses (a helper's own globals too), so that the saved file runs in a fresh Python."""
    seen = set() if seen is None else seen
    lines = []
    names = set(function.__code__.co_names)
    for code in function.__code__.co_consts:  # names used by nested functions and comprehensions
        if hasattr(code, "co_names"):
            names |= set(code.co_names)
    for name in sorted(names & set(function.__globals__) - seen):
        seen.add(name)
        value = function.__globals__[name]
        if inspect.ismodule(value):
            lines.append(f"import {value.__name__} as {name}\n")
        elif _literal(value) is not None:
            lines.append(f"{name} = {_literal(value)}\n")
        elif getattr(value, "__module__", None) not in (None, "__main__") and hasattr(value, "__qualname__"):
            lines.append(f"from {value.__module__} import {value.__qualname__} as {name}\n")
        elif inspect.isfunction(value) or inspect.isclass(value):
            with contextlib.suppress(OSError, TypeError):
                source = textwrap.dedent(inspect.getsource(value))
                helpers = _global_imports(value, seen) if inspect.isfunction(value) else []
                lines.extend(helpers)
                lines.append(source + "\n")
    return lines


def _literal(value: Any, budget: int = 100_000) -> str | None:
    """Python source that rebuilds ``value`` (numbers, strings, containers of them, small numpy arrays
    and scalars), or None when there is none."""
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        text = repr(value)
    elif isinstance(value, np.generic):
        text = f"np.{type(value).__name__}({value.item()!r})"
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biufc" and value.size <= 10_000:
        text = f"np.array({value.tolist()!r}, dtype=np.{value.dtype.name})"
    elif isinstance(value, list | tuple | set | frozenset):
        parts = [_literal(v, budget) for v in value]
        if any(p is None for p in parts):
            return None
        inner = ", ".join(parts)
        text = {list: f"[{inner}]", tuple: f"({inner}{',' if len(parts) == 1 else ''})"}.get(
            type(value), f"{type(value).__name__}([{inner}])"
        )
    elif isinstance(value, dict):
        parts = [(_literal(k, budget), _literal(v, budget)) for k, v in value.items()]
        if any(k is None or v is None for k, v in parts):
            return None
        text = "{" + ", ".join(f"{k}: {v}" for k, v in parts) + "}"
    else:
        return None
    return text if len(text) <= budget else None


#: Beside prepare_inputs.py: its sha256, checked before the file is run.
PREPARE_INPUTS_DIGEST = "prepare_inputs.sha256"


#: Beside prepare_inputs.py: the config of the run context it was saved in (JSON, secrets masked), what
#: ``get_context()["config"]`` gives it when it runs again, in this process or a fresh one.
PREPARE_INPUTS_CONTEXT = "prepare_inputs_context.json"


def write_prepare_inputs(directory: str | Path, source: str, config: Mapping | None = None) -> Path:
    """Write ``prepare_inputs.py`` and its digest (``prepare_inputs.sha256``) into ``directory``, with the
    config it reads through ``get_context()`` (``config``, or the current run context's when None)."""
    import hashlib
    import json

    from hyrax.context import get_context
    from hyrax.results.run_dir import write_text_atomic

    directory = Path(directory)
    path = directory / PREPARE_INPUTS_FILE
    write_text_atomic(path, source)
    write_text_atomic(directory / PREPARE_INPUTS_DIGEST, hashlib.sha256(source.encode()).hexdigest() + "\n")
    config = get_context().get("config") if config is None else config
    context_file = directory / PREPARE_INPUTS_CONTEXT
    if isinstance(config, Mapping) and config:
        from hyrax.config import to_plain
        from hyrax.config.secrets import masked

        write_text_atomic(context_file, json.dumps(masked(to_plain(config)), default=str))
    else:
        context_file.unlink(missing_ok=True)  # not the config of other weights saved here before
    return path


def saved_context_config(directory: str | Path) -> dict | None:
    """The config saved beside ``prepare_inputs.py`` in ``directory`` (None when there is none)."""
    import json

    path = Path(directory) / PREPARE_INPUTS_CONTEXT
    return json.loads(path.read_text()) if path.is_file() else None


def trust_prepare_inputs(directory: str | Path) -> None:
    """Record the current ``prepare_inputs.py`` of ``directory`` as trusted (after editing it on purpose)."""
    path = Path(directory) / PREPARE_INPUTS_FILE
    write_prepare_inputs(directory, path.read_text())


def load_prepare_inputs(directory: str | Path):
    """The ``prepare_inputs`` function saved in ``directory``, or None when there is none.

    The file is Python that runs here: it is run only when its sha256 is the one recorded when Hyrax
    wrote it (a file changed since is refused; a run of an earlier release without a digest is run with a
    warning)."""
    import hashlib

    directory = Path(directory)
    path = directory / PREPARE_INPUTS_FILE
    if not path.is_file():
        return None
    source = path.read_text()
    digest_file = directory / PREPARE_INPUTS_DIGEST
    if digest_file.is_file():
        recorded = digest_file.read_text().strip()
        actual = hashlib.sha256(source.encode()).hexdigest()
        if recorded != actual:
            raise WeightsError(
                f"{path} was changed after Hyrax saved it (sha256 {actual[:12]}..., recorded "
                f"{recorded[:12]}...). It is Python that runs when these weights are used, so it is refused. "
                f"Restore it; or, if you edited it yourself, accept it with "
                f"hyrax.models.model.trust_prepare_inputs('{directory}')."
            )
    else:
        warnings.warn(
            f"{path} has no recorded digest (a run of an earlier Hyrax): running it as it is.",
            UserWarning,
            stacklevel=2,
        )
    namespace: dict[str, Any] = {"__name__": "hyrax_saved_prepare_inputs"}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - Hyrax's own file, digest checked
    function = namespace.get("prepare_inputs")
    if not callable(function):
        return None
    from hyrax.context import with_saved_config

    return with_saved_config(function, saved_context_config(directory))


_FRESH_CHECK = """
import pickle, sys
from hyrax.context import run_context
from hyrax.models.model import saved_context_config
namespace = {"__name__": "hyrax_saved_prepare_inputs"}
source = open(sys.argv[1]).read()
exec(compile(source, sys.argv[1], "exec"), namespace)
with open(sys.argv[2], "rb") as handle:
    batch = pickle.load(handle)
with run_context("infer", config=saved_context_config(sys.argv[4])):
    result = namespace["prepare_inputs"](batch)
with open(sys.argv[3], "wb") as handle:
    pickle.dump(result, handle)
"""


def check_prepare_inputs_file(directory: str | Path, batch: Any, expected: Any) -> None:
    """Run the saved ``prepare_inputs.py`` in a fresh Python on ``batch`` (as inference in another process
    will): a failure, or a result other than ``expected``, is a ModelContractError saying what to change."""
    check = PrepareInputsCheck(directory, batch, expected)
    try:
        check.wait()
    finally:
        check.close()


class PrepareInputsCheck:
    """:func:`check_prepare_inputs_file` started in the background: the fresh Python (about a second and a
    half, mostly its imports) runs beside the caller's own work. :meth:`poll` is cheap and raises as soon
    as the check has failed; :meth:`wait` waits for it; :meth:`close` stops it and removes its files."""

    def __init__(self, directory: str | Path, batch: Any, expected: Any):
        import pickle
        import subprocess
        import sys
        import tempfile

        self.path = Path(directory) / PREPARE_INPUTS_FILE
        self.expected = expected
        self.scratch = Path(tempfile.mkdtemp(prefix="hyrax-prepare-check-"))
        given, self.got = self.scratch / "batch.pkl", self.scratch / "prepared.pkl"
        given.write_bytes(pickle.dumps(batch))
        self.stderr = open(self.scratch / "stderr.txt", "wb")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FRESH_CHECK, str(self.path), str(given), str(self.got), str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        self.done = False

    def poll(self) -> bool:
        """True once the check has passed; False while it runs; a ModelContractError if it failed."""
        if not self.done and self.proc.poll() is not None:
            self._conclude()
        return self.done

    def wait(self, timeout: float = 600) -> None:
        """Wait for the check: return when it passed, raise ModelContractError when it failed."""
        import subprocess

        if not self.done:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.close()
                raise ModelContractError(
                    f"The prepare_inputs saved with the weights ({self.path}) did not finish in {timeout:.0f} s "
                    "in a fresh Python: it must prepare one batch quickly."
                ) from None
            self._conclude()

    def close(self) -> None:
        """Stop the check if it still runs and remove its scratch files (safe to call twice)."""
        import shutil

        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _conclude(self) -> None:
        import pickle

        try:
            if self.proc.returncode != 0:
                self.stderr.flush()
                stderr = (self.scratch / "stderr.txt").read_text(errors="replace")
                last = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or ["?"]
                raise ModelContractError(
                    f"The prepare_inputs saved with the weights ({self.path}) fails in a fresh Python: {last[0]}. "
                    "Inference in another process would fail the same way. Names it uses from your notebook "
                    "are saved when they are numbers, strings, small arrays, functions or importable objects: "
                    "define anything else inside prepare_inputs, or import it from a module."
                )
            result = pickle.loads(self.got.read_bytes())
            if not _same(result, self.expected):
                raise ModelContractError(
                    f"The prepare_inputs saved with the weights ({self.path}) gives another result in a fresh "
                    "Python than in this one: it depends on state that is not saved (a global changed after "
                    "definition?)."
                )
        finally:
            self.close()
        self.done = True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and (
            np.allclose(a, b, equal_nan=True) if a.dtype.kind in "biufc" else bool((a == b).all())
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


# -- the contract ------------------------------------------------------------------------------------
def to_torch(prepared: Any, device: Any = "cpu"):
    """prepare_inputs output (numpy, or a tuple/list of numpy and None) -> tensors on ``device``."""
    import torch

    if isinstance(prepared, tuple | list):
        return tuple(to_torch(p, device) for p in prepared)
    if prepared is None:
        return None
    if isinstance(prepared, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(prepared)).to(device)
    return torch.as_tensor(prepared, device=device)


def prepared_problem(prepared: Any) -> str | None:
    """Why a prepare_inputs result is not numpy (None when it is fine)."""
    items = prepared if isinstance(prepared, tuple | list) else (prepared,)
    for item in items:
        if type(item).__module__.startswith("torch"):
            return (
                "prepare_inputs returned a torch tensor: return numpy arrays (Hyrax moves them to the device and "
                "makes tensors), e.g. `return batch['data']['image']` instead of `torch.tensor(...)`."
            )
        if item is not None and not isinstance(item, np.ndarray | np.generic | int | float):
            return (
                f"prepare_inputs returned a {type(item).__name__}: return a numpy array or a tuple of them."
            )
    return None


REQUIRED = {
    "prepare_inputs": "@staticmethod\ndef prepare_inputs(batch): return batch['data']['image']  # numpy in, numpy out",
    "train_batch": "def train_batch(self, x): ...loss.backward(); self.optimizer.step(); return {'loss': loss.item()}",
    "infer_batch": "def infer_batch(self, x): return self(x)  # one row per object",
}


def check_model_contract(model, batch: Mapping) -> Any:
    """Check ``model`` on one numpy ``batch`` before a long run; return the prepared tensors.

    Raises ModelContractError saying what to write.
    """
    import torch

    name = type(model).__name__
    for method, example in REQUIRED.items():
        if not callable(getattr(model, method, None)):
            raise ModelContractError(f"Model {name} has no {method}. Add one, e.g.:\n    {example}")
    prepared = model.prepare_inputs(batch)
    problem = prepared_problem(prepared)
    if problem:
        raise ModelContractError(f"Model {name}: {problem}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    tensors = to_torch(prepared, device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model.infer_batch(tensors)
    except Exception as error:  # the user's forward pass: any error means the batch does not fit
        shapes = ", ".join(
            str(tuple(t.shape))
            for t in (tensors if isinstance(tensors, tuple) else (tensors,))
            if t is not None
        )
        raise ModelContractError(
            f"Model {name} cannot take a batch of shape {shapes}: {type(error).__name__}: {error}. Check that its "
            f"layers fit the data (the data_sample argument of __init__ carries one prepared sample's shapes)."
        ) from error
    finally:
        model.train(was_training)
    # A dict is one results column per key (as published); each value is checked as a tensor would be.
    for key, value in output.items() if isinstance(output, Mapping) and output else [(None, output)]:
        if (
            not isinstance(value, torch.Tensor)
            or value.ndim == 0
            or value.shape[0] != len(batch["object_id"])
        ):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            where = "" if key is None else f"[{key!r}]"
            raise ModelContractError(
                f"Model {name}: infer_batch{where} must return a tensor with one row per object (batch of "
                f"{len(batch['object_id'])}), got {got}. A dict of such tensors writes one results column per key."
            )
    return tensors


def first_field(batch: Mapping, field: str) -> np.ndarray:
    """``batch[<name>][field]`` for the first dataset that has ``field`` (built-in models use it)."""
    for value in batch.values():
        if isinstance(value, Mapping) and field in value:
            return value[field]
    names = sorted({f for v in batch.values() if isinstance(v, Mapping) for f in v})
    raise ModelContractError(
        f"The batch has no '{field}' field (fields: {', '.join(names)}); request it in `fields`."
    )
