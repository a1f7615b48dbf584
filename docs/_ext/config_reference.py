"""Sphinx extension: the configuration reference, generated from the packaged defaults at every build.

Every key of ``hyrax_default_config.toml`` with its default and the comment above it, section by
section, written to ``_generated/config_reference.md`` (included by ``configuration.md``), so the page
cannot drift from the file Hyrax reads.
"""

from __future__ import annotations

import tomllib
from pathlib import Path


def _toml_value(value) -> str:
    import tomlkit

    return tomlkit.item(value).as_string()


def render() -> str:
    from hyrax.config.help import Documentation
    from hyrax.config.keys import join_key
    from hyrax.config.manager import DEFAULT_CONFIG_PATH

    docs = Documentation()
    docs.add_file(DEFAULT_CONFIG_PATH)
    with open(DEFAULT_CONFIG_PATH, "rb") as handle:
        defaults = tomllib.load(handle)

    def value_at(path):
        table = defaults
        for segment in path:
            table = table[segment]
        return table

    lines = []
    for section in docs.section_text:
        keys = [k for k in docs.key_comments if k[:-1] == section]
        intro = []
        for line in docs.section_text[section]:
            stripped = line.strip()
            if stripped.startswith("#"):
                intro.append(stripped.lstrip("#").strip())
            elif stripped and not stripped.startswith("["):
                break  # the first key: what follows belongs to the keys
        title = "Top level" if not section else f"`[{join_key(section)}]`"
        if not keys and not intro:
            continue
        lines += [f"## {title}", ""]
        if section and intro:
            lines += [" ".join(intro), ""]
        if keys:
            lines += ["| key | default | meaning |", "|---|---|---|"]
            for key in keys:
                value = value_at(key)
                shown = "(a table)" if isinstance(value, dict) else _toml_value(value)
                meaning = " ".join(docs.key_comments[key]).replace("|", "\\|")
                shown = shown.replace("|", "\\|")
                lines.append(f"| `{key[-1]}` | `{shown}` | {meaning} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _write(app) -> None:
    target = Path(app.srcdir) / "_generated" / "config_reference.md"
    target.parent.mkdir(exist_ok=True)
    text = render()
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def setup(app):
    app.connect("builder-inited", _write)
    return {"version": "1", "parallel_read_safe": True}
