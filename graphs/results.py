"""`RunResult`: everything one run produced, with its totals."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from amaos_llm.types import Cost
from nodes import ResultMessage
from nodes.messages import ZERO_COST, ZERO_USAGE, assemble, blank_state

if TYPE_CHECKING:
    from amaos_llm import Attempt, Budget

# How the manager's skip reasons for cost begin (amaos_llm.budget): a model passed over for them
# before the one that answered makes the answer a downgrade.
_COST_SKIPS = ("over budget", "over max_cost")


class RunResult(BaseModel):
    """One run of a graph.

    - `outputs`: the result of each leaf node (no outgoing edges) that ran
    - `results`: every node's result (a node a loop ran several times: its last one)
    - `trace`: every result in the order they finished; the totals are sums over it
    - `errors`: the nodes that failed, with why. Nodes that did not run because an input failed
      are not listed; their results say `upstream 'X' failed: ...`
    - `skipped`: nodes no message reached (their edges' conditions did not hold)
    - `total_cost`: the sum of the known costs; `unpriced` lists nodes whose model has no price
    - `budget_usd`: the run's cap (its own, else one it shared with other runs), `budget_remaining`:
      what the tightest of its ledgers had left at the end; both None for a run without a cap
    - `downgraded`: nodes that answered after passing over a model for cost (an attempt skipped
      `over budget (...)` or `over max_cost` before the answering one)
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
    budget_usd: Cost | None = None
    budget_remaining: Cost | None = None
    downgraded: tuple[str, ...] = ()

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
        ledgers: Sequence[Budget] = (),
    ) -> RunResult:
        """Totals computed once, here, from the trace."""
        results: dict[str, ResultMessage] = {}
        cost_by_node: dict[str, Decimal] = {}
        unpriced: list[str] = []
        total_cost = ZERO_COST
        input_tokens = output_tokens = 0
        downgraded: list[str] = []
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
            if r.attempts and r.error is None and node_id not in downgraded and answered_after_cost_skip(r.attempts):
                downgraded.append(node_id)
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
        state["budget_usd"] = ledgers[0].limit if ledgers else None
        state["budget_remaining"] = min(b.remaining for b in ledgers) if ledgers else None
        state["downgraded"] = tuple(downgraded)
        return assemble(cls, state)


def answered_after_cost_skip(attempts: Sequence[Attempt]) -> bool:
    """Whether a model was skipped for cost before the attempt that answered (the last success)."""
    answered = next((i for i in range(len(attempts) - 1, -1, -1) if attempts[i].outcome == "success"), None)
    if answered is None:
        return False
    return any(a.outcome == "skipped" and (a.error or "").startswith(_COST_SKIPS) for a in attempts[:answered])
