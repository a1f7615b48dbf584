"""Tables from a compat run: per notebook (cells) and per upstream test file (tests), both passes.

    python summarize.py WORK_DIR > summary.md

Failures are grouped by their error's first line, with an automatic first-guess tag:
"upstream module" when the error is an import of a hyrax.* module the implementation does not have
(the category-(b)/(a) split of those is a judgement made in the rules of classify.py).
"""

from __future__ import annotations

import json
import re
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from collections import Counter, defaultdict
from pathlib import Path

MISSING_MODULE = re.compile(r"No module named '(hyrax[\w.]*)'")


def tag(message: str) -> str:
    m = MISSING_MODULE.search(message or "")
    if m:
        return f"upstream module {m.group(1)}"
    m = re.search(r"UpstreamInternalAPI: (hyrax[\w.]*)", message or "")
    if m:
        return f"upstream-internal (stub) {m.group(1).rsplit('.', 1)[0]}"
    if "NameError" in (message or "") or message.startswith("name '"):
        return "cascade (NameError)"
    return ""


def notebook_table(root: Path) -> tuple[list[str], list[dict]]:
    lines = [
        "| notebook | code cells | ok | error | timeout | skipped (why) | substituted/patched cells | first error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    failures = []
    for result_file in sorted(root.glob("*/result.json")):
        r = json.loads(result_file.read_text())
        r.setdefault("notebook", result_file.parent.name)
        cells = r.get("cells", [])
        st = Counter(c["status"] for c in cells)
        skipped = {k: v for k, v in st.items() if k not in ("ok", "error", "timeout")}
        changed = [str(c["index"]) for c in cells if c.get("kind") in ("substituted", "patched")]
        first = next((c for c in cells if c["status"] in ("error", "timeout")), None)
        first_text = ""
        if first:
            e = first.get("error", {})
            first_text = f"cell {first['index']}: {e.get('type')}: {e.get('first_line', '')[:140]}"
        lines.append(
            f"| {r['notebook']}{' (newer)' if r.get('newer') else ''} | {len(cells)} | {st.get('ok', 0)} | {st.get('error', 0)} | {st.get('timeout', 0)} | "
            + (", ".join(f"{v} {k}" for k, v in sorted(skipped.items())) or "-")
            + f" | {', '.join(changed) or '-'} | {first_text.replace('|', '/')} |"
        )
        for c in cells:
            if c["status"] in ("error", "timeout"):
                e = c.get("error", {})
                failures.append(
                    {
                        "where": f"{r['notebook']} cell {c['index']}",
                        "type": e.get("type"),
                        "line": e.get("first_line", ""),
                        "frame": e.get("hyrax_frame"),
                        "tag": tag(f"{e.get('type')}: {e.get('first_line', '')}"),
                    }
                )
    return lines, failures


CATEGORIES = ["a", "b", "c", "net", "env", "harness", "?"]


def tests_table(base: Path) -> tuple[list[str], list[dict]]:
    from classify import classify

    results = base / "results.json"
    if not results.exists():
        return [f"(no results in {base})"], []
    records = json.loads(results.read_text())
    by_file = defaultdict(Counter)
    failures = []
    for r in records:
        by_file[r["file"]][r["outcome"]] += 1
        if r["outcome"] in ("failed", "error"):
            where = f"{r['file']}::{r['name']}"
            category, key = classify(where, r["message"])
            by_file[r["file"]]["cat:" + category] += 1
            first = next((ln for ln in r["message"].splitlines() if ln.strip()), "")
            failures.append(
                {
                    "where": where,
                    "line": first[:300],
                    "tag": f"({category}) {key}" if key else f"({category}) {first[:150]}",
                }
            )
    head = "| test file | tests | passed | failed | error | skipped | " + " | ".join(CATEGORIES) + " |"
    lines = [head, "|" + "---|" * (6 + len(CATEGORIES))]
    total = Counter()
    for name, c in sorted(by_file.items()):
        n = sum(v for k, v in c.items() if not k.startswith("cat:"))
        total.update(c)
        cats = " | ".join(str(c["cat:" + k] or "") for k in CATEGORIES)
        lines.append(
            f"| {name} | {n} | {c['passed']} | {c['failed']} | {c['error']} | {c['skipped']} | {cats} |"
        )
    n = sum(v for k, v in total.items() if not k.startswith("cat:"))
    cats = " | ".join(str(total["cat:" + k]) for k in CATEGORIES)
    lines.append(
        f"| **total** | {n} | {total['passed']} | {total['failed']} | {total['error']} | {total['skipped']} | {cats} |"
    )
    return lines, failures


def grouped(failures: list[dict]) -> list[str]:
    groups = defaultdict(list)
    for f in failures:
        key = f["tag"] or f["line"][:160]
        groups[key].append(f["where"])
    out = []
    for key, wheres in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out.append(f"- ({len(wheres)}) `{key}`")
        for w in wheres[:12]:
            out.append(f"    - {w}")
        if len(wheres) > 12:
            out.append(f"    - ... {len(wheres) - 12} more")
    return out


def main() -> int:
    work = Path(sys.argv[1])
    for label, sub in (
        ("Notebooks (verbatim imports)", "nb"),
        ("Notebooks (with compat_aliases)", "nb-aliases"),
    ):
        if (work / sub).exists():
            lines, failures = notebook_table(work / sub)
            print(f"## {label}\n")
            print("\n".join(lines))
            print("\nFailures, grouped:\n")
            print("\n".join(grouped(failures)))
            print()
    for label, sub in (
        ("Upstream tests, plain pass", "tests-plain"),
        ("Upstream tests, aliases pass", "tests-aliases"),
        ("Upstream tests, workaround pass (subset)", "tests-workaround"),
    ):
        if (work / sub).exists():
            lines, failures = tests_table(work / sub)
            print(f"## {label}\n")
            print("\n".join(lines))
            print("\nFailures, grouped:\n")
            print("\n".join(grouped(failures)))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
