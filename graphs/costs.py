"""What a command's runs cost, by node and by model: the tables `amaos-llm run --budget` ends with.

`CostTally.add(run)` takes each `RunResult` as it finishes (a node a loop ran several times counts
each task); `tables()` renders them, `budget_line(ledger)` says what the command's cap has left.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from graphs.results import answered_after_cost_skip

if TYPE_CHECKING:
    from rich.table import Table

    from amaos_llm import Budget
    from graphs.results import RunResult


@dataclass
class CostRow:
    calls: int = 0
    failed: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    downgraded: int = 0  # by node: tasks that answered after passing over a model for cost


class CostTally:
    def __init__(self) -> None:
        self.by_node: dict[str, CostRow] = {}
        self.by_model: dict[str, CostRow] = {}

    def add(self, run: RunResult) -> None:
        for r in run.trace:
            if r.model_name is None and not r.attempts:
                continue  # not a model call: a function, a template, a relayed failure
            row = self.by_node.setdefault(r.node_id, CostRow())
            row.calls += 1
            row.failed += r.error is not None
            row.tokens += r.tokens
            row.cost += r.cost or 0
            # Per task, not per run: each lap of a loop may or may not have been downgraded.
            row.downgraded += r.error is None and answered_after_cost_skip(r.attempts)
            for attempt in r.attempts:
                if attempt.outcome == "skipped":
                    continue
                model = self.by_model.setdefault(attempt.model_name, CostRow())
                model.calls += 1
                model.failed += attempt.outcome != "success"
                if attempt.usage is not None:
                    model.tokens += attempt.usage.input_tokens + attempt.usage.output_tokens
                model.cost += attempt.cost or 0

    def tables(self) -> tuple[Table, Table]:
        from rich.table import Table

        nodes = Table(title="cost by node", title_justify="left", box=None, header_style="dim", pad_edge=False)
        for column in ("node", "calls", "failed", "tokens", "cost", "downgraded"):
            nodes.add_column(column, justify="left" if column == "node" else "right")
        for node_id, row in self.by_node.items():
            nodes.add_row(node_id, str(row.calls), str(row.failed), str(row.tokens), f"${row.cost:.6f}",
                          str(row.downgraded))
        models = Table(title="cost by model", title_justify="left", box=None, header_style="dim", pad_edge=False)
        for column in ("model", "calls", "failed", "tokens", "cost"):
            models.add_column(column, justify="left" if column == "model" else "right")
        for name, row in sorted(self.by_model.items()):
            models.add_row(name, str(row.calls), str(row.failed), str(row.tokens), f"${row.cost:.6f}")
        return nodes, models


def budget_line(ledger: Budget) -> str:
    """`budget $0.50: spent $0.4312, remaining $0.0688`."""
    return f"budget ${ledger.limit:.2f}: spent ${ledger.spent:.4f}, remaining ${ledger.remaining:.4f}"

