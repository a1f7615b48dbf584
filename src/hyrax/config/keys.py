"""Dotted config keys: ``"train.epochs"``, with quoted segments for keys that contain dots.

>>> split_key("'torch.optim.Adam'.lr")
['torch.optim.Adam', 'lr']
>>> join_key(["torch.optim.Adam", "lr"])
'"torch.optim.Adam".lr'
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from hyrax.errors import ConfigError

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def split_key(key: str) -> list[str]:
    """Split a dotted key into its segments; ``'...'`` or ``"..."`` quote a segment holding dots."""
    segments: list[str] = []
    current = ""
    quote: str | None = None
    just_closed = False
    for char in key.strip():
        if quote:
            if char == quote:
                quote, just_closed = None, True
            else:
                current += char
        elif char in "'\"" and not current:
            quote = char
        elif char == ".":
            if not current and not just_closed:
                raise ConfigError(f"Config key '{key}' has an empty segment: write it like 'train.epochs'.")
            segments.append(current)
            current, just_closed = "", False
        elif just_closed:
            raise ConfigError(f"Config key '{key}': put a '.' after the quoted segment.")
        else:
            current += char
    if quote:
        raise ConfigError(f"Config key '{key}' has an unclosed {quote} quote.")
    if not current and not just_closed:
        raise ConfigError(f"Config key '{key}' is empty or ends with '.': write it like 'train.epochs'.")
    segments.append(current)
    return [segment.strip() for segment in segments]


def join_key(segments: list[str] | tuple[str, ...]) -> str:
    """Inverse of :func:`split_key`, quoting segments that are not bare TOML keys."""
    return ".".join(s if _BARE.match(s) else f'"{s}"' for s in segments)


def get_path(table: Mapping, segments: list[str] | tuple[str, ...]) -> Any:
    """``table[s0][s1]...``; raises KeyError at the first missing segment."""
    value: Any = table
    for segment in segments:
        if not isinstance(value, Mapping):
            raise KeyError(segment)
        value = value[segment]
    return value


def set_path(table: dict, segments: list[str] | tuple[str, ...], value: Any) -> None:
    """``table[s0][s1]... = value``, creating intermediate tables."""
    for segment in segments[:-1]:
        table = table.setdefault(segment, {})
    table[segments[-1]] = value


def walk(table: Mapping, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path, value) in a nested table, tables included, depth first."""
    for key, value in table.items():
        path = (*prefix, key)
        yield path, value
        if isinstance(value, Mapping):
            yield from walk(value, path)
