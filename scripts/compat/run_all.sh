#!/usr/bin/env bash
# Re-run the whole compatibility check of a Hyrax implementation against upstream Hyrax's own material.
#
#   ../shared/compat/run_all.sh UPSTREAM PYTHON [WORK]
#
# UPSTREAM: upstream lincc-frameworks/hyrax, as a checkout or as a bare git directory (HEAD is extracted).
# PYTHON:   the python of the environment under test (its `hyrax` package is what is tested).
# WORK:     scratch directory (default: $TMPDIR/hyrax-compat); everything is written there.
# NEWER_HAND (environment, optional): a folder holding the newer notebooks that the git directory lacks
#           (their code cells read with the search tool), for newer_notebooks.py --hand.
#
# Steps (each takes the shared CPU lock, as the machine's other benchmarks expect):
#   1. extract upstream (git archive HEAD) unless it is already a checkout;
#   2. install the notebooks' own plotting/tuning packages (matplotlib, optuna, hyperopt) into WORK/extra
#      with pip --target, only those the environment lacks, so the environment under test is untouched;
#   3. gather upstream's notebooks newer than the snapshot (newer_notebooks.py: from the bare git dir's
#      other commits, and NEWER_HAND) into WORK/newer;
#      run every upstream notebook's code cells, the newer ones included (run_notebooks.py), then again with compat_aliases for the
#      notebooks that stopped on an upstream import path;
#   4. run upstream's tests three ways (run_tests.py): plain, aliases (+ lazy stubs), workaround;
#   5. run the probes (smallest reproductions) and write WORK/summary.md (summarize.py).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UPSTREAM="${1:?usage: run_all.sh UPSTREAM PYTHON [WORK]}"
PY="${2:?usage: run_all.sh UPSTREAM PYTHON [WORK]}"
WORK="${3:-${TMPDIR:-/tmp}/hyrax-compat}"
LOCK="${CPU_LOCK-}"   # optional: a lock file shared with other heavy jobs on the machine
locked() { if [ -n "$LOCK" ]; then flock -s "$LOCK" "$@"; else "$@"; fi; }
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

if [ -d "$UPSTREAM/src/hyrax" ]; then
  SRC="$(cd "$UPSTREAM" && pwd)"
else
  SRC="$WORK/upstream"
  rm -rf "$SRC" && mkdir -p "$SRC"
  git --git-dir="$UPSTREAM" archive HEAD | tar -x -C "$SRC"
  git --git-dir="$UPSTREAM" log -1 --format='%H %ad %s' > "$WORK/upstream_commit.txt"
fi
NEWER_ARGS=()
if [ ! -d "$UPSTREAM/src/hyrax" ]; then
  if python3 "$HERE/newer_notebooks.py" "$UPSTREAM" "$WORK/newer" ${NEWER_HAND:+--hand "$NEWER_HAND"} \
       > "$WORK/newer.txt"; then :; else echo "some newer notebooks are missing: see $WORK/newer.txt"; fi
  NEWER_ARGS=(--newer "$WORK/newer")
fi

EXTRA="$WORK/extra"
mkdir -p "$EXTRA"
need=()
for mod_pkg in matplotlib:matplotlib cycler:cycler fontTools:fonttools kiwisolver:kiwisolver pyparsing:pyparsing \
               optuna:optuna alembic:alembic colorlog:colorlog sqlalchemy:sqlalchemy mako:mako greenlet:greenlet \
               hyperopt:hyperopt six:six future:future py4j:py4j; do
  mod="${mod_pkg%%:*}"; pkg="${mod_pkg##*:}"
  PYTHONPATH="$EXTRA" "$PY" -c "import $mod" 2>/dev/null || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  locked "$PY" -m pip install -q --no-deps --target "$EXTRA" "${need[@]}"
fi

locked "$PY" "$HERE/run_notebooks.py" --upstream "$SRC" --work "$WORK" --python "$PY" --extra "$EXTRA" \
  "${NEWER_ARGS[@]}" | tee "$WORK/notebooks.txt"
# Notebooks that stopped on an upstream import path: run them again with the aliases installed.
mapfile -t again < <("$PY" - "$WORK/nb" <<'EOF'
import json, sys, pathlib
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/result.json")):
    r = json.loads(f.read_text())
    if any("No module named 'hyrax." in (c.get("error") or {}).get("message", "") for c in r["cells"]):
        print(r["notebook"])
EOF
)
if [ "${#again[@]}" -gt 0 ]; then
  locked "$PY" "$HERE/run_notebooks.py" --upstream "$SRC" --work "$WORK" --python "$PY" --extra "$EXTRA" \
    "${NEWER_ARGS[@]}" --aliases --only "${again[@]}" | tee "$WORK/notebooks-aliases.txt"
fi

for pass in plain aliases; do
  locked "$PY" "$HERE/run_tests.py" --upstream "$SRC" --work "$WORK" --python "$PY" --pass "$pass" \
    | tee "$WORK/tests-$pass.txt"
done
# The workaround pass: only the files whose tests go through the verbs that the two blockers stop.
locked "$PY" "$HERE/run_tests.py" --upstream "$SRC" --work "$WORK" --python "$PY" --pass workaround \
  --files test_train test_test test_umap test_save_to_database test_infer test_config_isolation test_trace \
          test_hyrax_cnn test_hyrax_autoencoderv2 test_augmentation test_e2e_local test_nan test_reduce_dimensions \
          test_inference_dataset \
  | tee "$WORK/tests-workaround.txt"

UPSTREAM="$SRC" locked "$PY" "$HERE/probes.py" | tee "$WORK/probes.txt"
"$PY" "$HERE/summarize.py" "$WORK" > "$WORK/summary.md"
echo "summary: $WORK/summary.md"
