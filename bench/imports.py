"""Benchmark 3: how long `import X` takes in a fresh interpreter.

Each module is imported `repeats` times, in a new process each, alternating between modules; the
child times only the import statement. The full run first imports each once unmeasured, so that
byte-code caches exist (pip and the first runs have usually written them already).

    python -m bench.imports [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench.timing import emit, metric

MODULES = {"ours": "amaos_llm", "ours_graphs": "graphs", "litellm": "litellm", "langgraph": "langgraph.graph"}
FULL, QUICK = 10, 3

_TIMED = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str) -> float:
    out = subprocess.run([sys.executable, "-c", _TIMED.format(module=module)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = QUICK if args.quick else FULL
    if not args.quick:
        for module in MODULES.values():
            import_seconds(module)
    samples: dict[str, list[float]] = {side: [] for side in MODULES}
    for _ in range(repeats):
        for side, module in MODULES.items():
            samples[side].append(import_seconds(module))
    for side, module in MODULES.items():
        emit({"benchmark": "imports", "side": side, "module": module,
              "metrics": {"import": metric([samples[side]], "s")}})


if __name__ == "__main__":
    main()
