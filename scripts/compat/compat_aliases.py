"""Aliases for the four upstream Hyrax import paths that upstream's *user* notebooks use.

    import compat_aliases; compat_aliases.install()

Each is added only when the implementation under test lacks that module, as a thin alias onto the
implementation's own public object, so a notebook or test gets past its import line and exercises
behaviour. (Whether the import paths themselves exist is reported separately: the "plain" passes.)

install_stubs(names) (tests only) also makes every other upstream module the implementation lacks
importable as a lazy stub: importing it works, but using anything from it raises UpstreamInternalAPI
naming the object. Upstream test files that import an internal helper at the top then still collect,
and each test fails (or passes) on what it actually uses, instead of the whole file failing at import.

    hyrax.config_utils.find_most_recent_results_dir   (upstream semantics: newest *-<verb>-* run dir)
    hyrax.models.model_registry.hyrax_model
    hyrax.datasets.dataset_registry.HyraxDataset
    hyrax.datasets.random.hyrax_random_dataset.HyraxRandomDataset
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import types
from pathlib import Path

INSTALLED: list[str] = []


def random_dataset_class():
    for module, attr in (
        ("hyrax.datasets.random.hyrax_random_dataset", "HyraxRandomDataset"),
        ("hyrax.datasets.random", "HyraxRandomDataset"),
    ):
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError("no HyraxRandomDataset importable")


def find_most_recent_results_dir(config, verb):
    """Upstream semantics: the newest <YYYYmmdd-HHMMSS>-... directory matching *-<verb>-*, else None."""
    root = Path(config["general"]["results_dir"]).expanduser().resolve()
    best, best_stamp = None, 0
    for path in root.glob(f"*-{verb}-*"):
        m = re.match(r"([0-9]{8})-([0-9]{6})-.*", path.name)
        if path.is_dir() and m and int(m[1] + m[2]) > best_stamp:
            best, best_stamp = path, int(m[1] + m[2])
    return best


def _exists(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


class UpstreamInternalAPI(Exception):
    """Raised on use of an upstream-internal object that the implementation under test does not have."""


class _Placeholder:
    def __init__(self, qualname: str):
        object.__setattr__(self, "_qualname", qualname)

    def _fail(self, *args, **kwargs):
        raise UpstreamInternalAPI(f"{self._qualname}: upstream-internal API, not provided (compat stub)")

    __call__ = _fail
    __iter__ = _fail
    __len__ = _fail
    __getitem__ = _fail

    def __mro_entries__(self, bases):
        self._fail()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(f"{self._qualname}.{name}")

    def __repr__(self):
        return f"<compat stub {self._qualname}>"


class _StubModule(types.ModuleType):
    """A module whose missing attributes are placeholders (and, being a package, whose submodules too)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(f"{self.__name__}.{name}")


def _alias(name: str, **attrs) -> None:
    if _exists(name):
        return
    module = _StubModule(name)
    module.__dict__.update(attrs)
    module.__path__ = []
    module.__compat_alias__ = True
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)  # so `import a.b; a.b.x` works as for a real module
    INSTALLED.append(name)


class _StubFinder:
    """Last on sys.meta_path: answers only for listed upstream module names nothing else could find."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__compat_stub__ = True
        return module

    def exec_module(self, module):
        STUBBED.append(module.__name__)


STUBBED: list[str] = []


def upstream_module_names(upstream_src: Path) -> list[str]:
    """Dotted names of every module and package under an upstream src/hyrax tree."""
    names = []
    for path in Path(upstream_src).rglob("*.py"):
        rel = path.relative_to(Path(upstream_src).parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if all(p.isidentifier() for p in parts):
            names.append(".".join(parts))
    return sorted(set(names))


def install_stubs(names) -> None:
    if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
        sys.meta_path.append(_StubFinder(names))


def install() -> list[str]:
    from hyrax.datasets import HyraxDataset
    from hyrax.models import hyrax_model

    _alias("hyrax.config_utils", find_most_recent_results_dir=find_most_recent_results_dir)
    _alias("hyrax.models.model_registry", hyrax_model=hyrax_model)
    _alias("hyrax.datasets.dataset_registry", HyraxDataset=HyraxDataset)
    with contextlib.suppress(ImportError):
        _alias("hyrax.datasets.random.hyrax_random_dataset", HyraxRandomDataset=random_dataset_class())
    return INSTALLED
