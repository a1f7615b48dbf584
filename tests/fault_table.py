"""The fault suite's table: where each kill landed and how the writer came out of it.

A fault test calls :func:`record_landing` after its checks; when ``HYRAX_FAULT_TABLE`` names a file, one
JSON line per case is appended to it, from which a table of writer x point x landed x outcome is made.

>>> record_landing("infer", "results.committed:1", {"rows": 16}, "complete, equal to uninterrupted")
"""

from __future__ import annotations

import json
import os

#: The environment variable naming the JSON-lines file the cases are appended to (unset: nothing written).
TABLE_VARIABLE = "HYRAX_FAULT_TABLE"


def record_landing(writer: str, point: str, landed: dict, outcome: str) -> None:
    """Append ``{"writer", "point", "landed", "outcome"}`` as one JSON line to $HYRAX_FAULT_TABLE, if set."""
    target = os.environ.get(TABLE_VARIABLE)
    if not target:
        return
    line = json.dumps({"writer": writer, "point": point, "landed": landed, "outcome": outcome}, default=str)
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
