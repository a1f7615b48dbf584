"""Run one extracted notebook's code cells, in order, in one namespace, recording each cell's outcome.

    python run_notebook.py CELLS.json RESULT.json [--cell-timeout S]

CELLS.json: {"notebook": str, "cells": [{"index": i, "source": str, "action": "run"|"skip",
             "status_if_skipped": str, "note": str}]}

Every cell runs even after an earlier one failed (later cells then often fail with a NameError: the
summary marks those as cascades). IPython magics (%..., !...) are dropped; a cell that is only magics is
"skipped-magic". The value of a cell's last expression is printed, as Jupyter would show it.
RESULT.json is rewritten after every cell, so a crash or a kill leaves the cells done so far.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import re
import signal
import sys
import time
import traceback


class CellTimeout(Exception):
    pass


class Tee:
    """stdout that also keeps what a cell printed (to check a stopped cell did its work)."""

    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text):
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


INTERRUPTING = {"planned": False}


def _alarm(signum, frame):
    if INTERRUPTING["planned"]:
        # A cell that waits for ever by design (a loop over a live stream) is stopped as a Jupyter user
        # stops it: KeyboardInterrupt, as the stop button sends.
        raise KeyboardInterrupt("stopped by the harness after the planned time (the notebook's stop button)")
    raise CellTimeout("cell timed out")


def strip_magics(source: str) -> tuple[str, bool]:
    lines, had_code = [], False
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            lines.append(line[: len(line) - len(stripped)] + "pass  # magic: " + stripped)
            continue
        if stripped and not stripped.startswith("#"):
            had_code = True
        lines.append(line)
    return "\n".join(lines), had_code


def summarize_error(exc: BaseException, cell_name: str) -> dict:
    tb = traceback.extract_tb(exc.__traceback__)
    cell_frames = [f for f in tb if f.filename == cell_name]
    hyrax_frames = [f for f in tb if f"{os.sep}hyrax{os.sep}" in f.filename]
    message = str(exc)
    return {
        "type": type(exc).__name__,
        "message": message[:2000],
        "first_line": " / ".join(line.strip() for line in message.strip().splitlines()[:3] if line.strip())[
            :500
        ],
        "cell_line": (cell_frames[-1].line if cell_frames else None),
        "hyrax_frame": (
            f"{hyrax_frames[-1].filename.split(os.sep + 'hyrax' + os.sep, 1)[-1]}:"
            f"{hyrax_frames[-1].lineno} in {hyrax_frames[-1].name}"
            if hyrax_frames
            else None
        ),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:],
    }


def main() -> int:
    cells_path, result_path = sys.argv[1], sys.argv[2]
    timeout = 900
    if "--cell-timeout" in sys.argv:
        timeout = int(sys.argv[sys.argv.index("--cell-timeout") + 1])
    with open(cells_path) as f:
        spec = json.load(f)
    namespace = {"__name__": "__main__"}
    results = {"notebook": spec["notebook"], "cwd": os.getcwd(), "cells": []}
    signal.signal(signal.SIGALRM, _alarm)
    if os.environ.get("COMPAT_ALIASES") == "1":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import compat_aliases

        results["aliases"] = compat_aliases.install()

    def save():
        with open(result_path + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(result_path + ".tmp", result_path)

    for cell in spec["cells"]:
        record = {"index": cell["index"], "note": cell.get("note", ""), "kind": cell.get("kind", "verbatim")}
        print(f"\n===== {spec['notebook']} cell {cell['index']} ({record['kind']}) =====", flush=True)
        if cell["action"] == "skip":
            record["status"] = cell["status_if_skipped"]
            results["cells"].append(record)
            save()
            continue
        source, had_code = strip_magics(cell["source"])
        if not had_code:
            record["status"] = "skipped-magic" if cell["source"].strip() else "empty"
            results["cells"].append(record)
            save()
            continue
        name = f"<{spec['notebook']} cell {cell['index']}>"
        started = time.time()
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        try:
            tree = ast.parse(source, name)
            last_expr = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last_expr = ast.Expression(tree.body.pop().value)
            INTERRUPTING["planned"] = bool(cell.get("interrupt_after"))
            if INTERRUPTING["planned"]:
                sys.stdout = Tee(sys.__stdout__)
            signal.alarm(int(cell.get("interrupt_after") or timeout))
            exec(compile(tree, name, "exec"), namespace)
            if last_expr is not None:
                value = eval(compile(last_expr, name, "eval"), namespace)
                if value is not None:
                    text = repr(value)
                    print(text[:3000] + (" ...[truncated]" if len(text) > 3000 else ""), flush=True)
            signal.alarm(0)
            record["status"] = "ok"
        except KeyboardInterrupt as exc:
            signal.alarm(0)
            if not INTERRUPTING["planned"]:
                record["status"] = "error"
                record["error"] = summarize_error(exc, name)
                results["cells"].append(record)
                save()
                raise
            # The planned stop: the cell ran until stopped, as in Jupyter. The output it printed is the
            # evidence that it did its work (log.txt); "interrupted" counts as run, not as an error.
            printed = "".join(sys.stdout.parts) if isinstance(sys.stdout, Tee) else ""
            expected = cell.get("interrupt_expect", "")
            record["note"] = (record["note"] + "; " if record["note"] else "") + (
                f"stopped by the harness after {cell['interrupt_after']} s, as a user stops an endless loop"
            )
            if expected and not re.search(expected, printed):
                record["status"] = "error"
                record["error"] = {
                    "type": "NoProgress",
                    "message": f"stopped after {cell['interrupt_after']} s "
                    f"without printing /{expected}/ (the cell did none of its work)",
                    "first_line": f"stopped without printing /{expected}/",
                    "cell_line": None,
                    "hyrax_frame": None,
                    "traceback": "",
                }
            else:
                record["status"] = "interrupted"
                record["matched"] = len(re.findall(expected, printed)) if expected else None
        except BaseException as exc:  # noqa: BLE001 - a notebook cell may raise anything, even SystemExit
            signal.alarm(0)
            record["status"] = "timeout" if isinstance(exc, CellTimeout) else "error"
            record["error"] = summarize_error(exc, name)
            print(record["error"]["traceback"], file=sys.stderr, flush=True)
        finally:
            sys.stdout = sys.__stdout__
        record["seconds"] = round(time.time() - started, 2)
        results["cells"].append(record)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
