"""Benchmark 7 (a hook for now): the cost-efficiency workload of the budgets feature.

It reports itself skipped until the manager takes a budget (`LLMManager(budget_usd=)`; the
budget pieces in `amaos_llm.budget` land first). When it does, replace `measure()`:
a fixed workload through a manager with a budget, returning metrics in the shape the other
benchmarks use (see `bench.timing.metric` / `value`), and add its rows to `bench.report`.

    python -m bench.cost [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
from typing import Any

from bench.timing import emit

FEATURE_MODULE = "amaos_llm.budget"


def skip_reason() -> str | None:
    if importlib.util.find_spec(FEATURE_MODULE) is None:
        return f"{FEATURE_MODULE} does not exist yet (the budgets issue); nothing to measure"
    from amaos_llm import LLMManager

    if "budget_usd" not in inspect.signature(LLMManager).parameters:
        return "LLMManager takes no budget_usd yet (the budgets wiring); nothing to measure"
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
