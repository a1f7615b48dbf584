"""What every benchmark script shares: running one case in a fresh process, and its peak memory."""

from __future__ import annotations

import json
import resource
import subprocess
import sys


def peak_rss_mb() -> float:
    """Peak resident memory of this process (or its largest child), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run_case(script: str, *args) -> dict:
    """Run ``script --case ARGS`` in a fresh process (so its peak RSS is its own); return its JSON line."""
    result = subprocess.run(
        [sys.executable, script, "--case", *map(str, args)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"case {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
