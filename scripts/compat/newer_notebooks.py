"""Gather upstream's notebooks that are newer than the snapshot checkout into one folder.

    python newer_notebooks.py UPSTREAM_GIT DEST [--hand DIR]

UPSTREAM_GIT: the bare git directory the fetch tool gives for lincc-frameworks/hyrax (it holds upstream's
other branches, where most of these notebooks are). Each notebook of run_notebooks.NEWER with a commit is
written from that commit (`git show COMMIT:PATH`) to DEST/<name>.ipynb. Those without one are not in the
git directory: their code cells were read with the search tool (read_file on lincc-frameworks/hyrax) and
written out by hand; --hand DIR copies them from such a folder (e.g. /work/notes/compat_upstream/newer).
Nothing is written into the repository under test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_notebooks import NEWER  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("git_dir", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--hand", type=Path, default=None)
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    missing = 0
    for rel, (commit, where) in NEWER.items():
        out = args.dest / Path(rel).name
        if commit:
            text = subprocess.run(
                ["git", "--git-dir", str(args.git_dir), "show", f"{commit}:{rel}"],
                capture_output=True,
                check=False,
            )
            if text.returncode == 0:
                out.write_bytes(text.stdout)
                print(f"{rel}: {commit[:8]}")
                continue
        source = args.hand / Path(rel).name if args.hand else None
        if source and source.exists():
            if source.resolve() != out.resolve():
                shutil.copy2(source, out)
            print(f"{rel}: by hand ({where}) from {source}")
        else:
            missing += 1
            print(
                f"{rel}: MISSING - {where or commit}: read it with the search tool, write its code cells "
                f"to {out}"
            )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
