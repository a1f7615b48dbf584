"""Documentation of config sections and keys, read from the comments of the defaults files.

The packaged ``hyrax_default_config.toml`` is the user's reference: every key has a comment. This
module finds the comment of a key (the comment lines right above it) or the text of a whole section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hyrax.config.keys import join_key, split_key

_HEADER = re.compile(r"^\s*\[(?!\[)(?P<name>.+?)\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*(?P<key>"[^"]+"|'[^']+'|[A-Za-z0-9_-]+)\s*=""")


@dataclass
class Documentation:
    """Comments of one or more defaults files, indexed by dotted path."""

    key_comments: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    section_text: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def add_file(self, path: Path) -> None:
        section: tuple[str, ...] = ()
        pending: list[str] = []
        shared: list[str] = []  # keys listed together under one comment share it
        self.section_text.setdefault(section, [])
        for line in path.read_text(encoding="utf-8").splitlines():
            header = _HEADER.match(line)
            key = _KEY.match(line)
            if header:
                section = tuple(split_key(header.group("name")))
                self.section_text.setdefault(section, [])
                pending, shared = [], []
            elif key:
                name = split_key(key.group("key"))[0]
                shared = pending or shared
                self.key_comments[(*section, name)] = shared
                pending = []
            elif line.strip().startswith("#"):
                pending.append(line.strip().lstrip("#").strip())
            else:
                pending, shared = [], []
            self.section_text[section].append(line)

    def describe(self, segments: tuple[str, ...], current: object = None) -> str | None:
        """Text for a key (its comment, default and current value) or a section (its lines)."""
        if segments in self.section_text and segments:
            lines = []
            for section, text in self.section_text.items():
                if section[: len(segments)] == segments:
                    lines.extend(text)
            return "\n".join(lines).strip()
        if segments in self.key_comments:
            comment = "\n".join(self.key_comments[segments]) or "(no description)"
            text = f"{join_key(segments)}\n{comment}"
            if current is not None:
                from hyrax.config.secrets import mask

                text += f"\ncurrent value: {mask(segments[-1], current)!r}"
            return text
        return None

    def known_paths(self) -> list[str]:
        return [join_key(p) for p in (*self.section_text, *self.key_comments) if p]
