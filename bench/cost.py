"""Benchmark 7 (a hook for now): the cost-efficiency workload of the budgets feature.

It reports itself skipped until `amaos_llm` has budgets. When they land, replace `measure()`:
a fixed workload through a manager with a budget, returning metrics in the shape the other
benchmarks use (see `bench.timing.metric` / `value`), and add its rows to `bench.report`.

    python -m bench.cost [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from bench.timing import emit

FEATURE_MODULE = "amaos_llm.budget"


def skip_reason() -> str | None:
    if importlib.util.find_spec(FEATURE_MODULE) is None:
        return f"{FEATURE_MODULE} does not exist yet (the budgets issue); nothing to measure"
    return None


def measure(quick: bool) -> dict[str, Any]:
    raise NotImplementedError(f"{FEATURE_MODULE} exists: write its cost-efficiency workload here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    reason = skip_reason()
    if reason is not None:
        emit({"benchmark": "cost", "side": "ours", "skipped": reason})
    else:
        emit({"benchmark": "cost", "side": "ours", "metrics": measure(args.quick)})


if __name__ == "__main__":
    main()
