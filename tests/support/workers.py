"""Worker processes for the tests that need a fleet: each runs a `python -c` script against the
same store at once and prints one JSON line last, which is what it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_workers(script: str, args: list[list[str]], timeout: float = 120) -> list[Any]:
    """Start one process per argument list, all at once; each one's last stdout line, parsed."""
    procs = [subprocess.Popen([sys.executable, "-c", script, *a], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for a in args]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs
