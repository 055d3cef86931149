"""`RunResult`: everything one run produced, with its totals."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from amaos_llm.types import Cost
from nodes import ResultMessage
from nodes.messages import ZERO_COST, ZERO_USAGE, assemble, blank_state


class RunResult(BaseModel):
    """One run of a graph.

    - `outputs`: the result of each leaf node (no outgoing edges) that ran
    - `results`: every node's result (a node a loop ran several times: its last one)
    - `trace`: every result in the order they finished; the totals are sums over it
    - `errors`: the nodes that failed, with why. Nodes that did not run because an input failed
      are not listed; their results say `upstream 'X' failed: ...`
    - `skipped`: nodes no message reached (their edges' conditions did not hold)
    - `total_cost`: the sum of the known costs; `unpriced` lists nodes whose model has no price
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    outputs: dict[str, ResultMessage]
    results: dict[str, ResultMessage]
    trace: tuple[ResultMessage, ...]
    errors: dict[str, str]
    skipped: tuple[str, ...]
    total_cost: Cost
    total_tokens: int
    input_tokens: int
    output_tokens: int
    cost_by_node: dict[str, Cost]
    unpriced: tuple[str, ...]
    wall_time: float
    metadata: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def output(self) -> ResultMessage | None:
        """The single output, when the graph has exactly one leaf that ran."""
        return next(iter(self.outputs.values())) if len(self.outputs) == 1 else None

    @classmethod
    def build(
        cls,
        run_id: str,
        trace: Sequence[ResultMessage],
        leaves: Sequence[str],
        node_ids: Sequence[str],
        errors: dict[str, str],
        wall_time: float,
        metadata: dict[str, Any],
    ) -> RunResult:
        """Totals computed once, here, from the trace."""
        results: dict[str, ResultMessage] = {}
        cost_by_node: dict[str, Decimal] = {}
        unpriced: list[str] = []
        total_cost = ZERO_COST
        input_tokens = output_tokens = 0
        for r in trace:
            node_id = r.node_id
            usage = r.usage
            if usage is not ZERO_USAGE:
                input_tokens += usage.input_tokens
                output_tokens += usage.output_tokens
            cost = r.cost
            if cost is None:
                if node_id not in unpriced:
                    unpriced.append(node_id)
                cost = ZERO_COST
            if node_id in results:  # a node a loop ran again
                cost_by_node[node_id] += cost
            else:
                cost_by_node[node_id] = cost
            results[node_id] = r
            if cost:
                total_cost += cost
        # Every value here is built from validated messages: skip re-validating them, and fill a
        # key-sharing state rather than passing keywords (this runs once per run).
        state = blank_state(cls)
        state["run_id"] = run_id
        state["outputs"] = {leaf: results[leaf] for leaf in leaves if leaf in results}
        state["results"] = results
        state["trace"] = tuple(trace)
        state["errors"] = errors
        state["skipped"] = () if len(results) == len(node_ids) else tuple(n for n in node_ids if n not in results)
        state["total_cost"] = total_cost
        state["total_tokens"] = input_tokens + output_tokens
        state["input_tokens"] = input_tokens
        state["output_tokens"] = output_tokens
        state["cost_by_node"] = cost_by_node
        state["unpriced"] = tuple(unpriced)
        state["wall_time"] = wall_time
        state["metadata"] = metadata
        return assemble(cls, state)
