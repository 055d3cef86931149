"""`GraphOrchestrator`: register nodes, connect them, run the graph (many times, concurrently).

    orchestrator = GraphOrchestrator()
    await orchestrator.register_node(LLMManagerNode(id="llm", config={...}))
    await orchestrator.register_node(FunctionNode(id="shout", fn=lambda r: r.content.upper()))
    orchestrator.connect("llm", "shout")
    run = await orchestrator.run("Summarise: ...")
    run.outputs["shout"].content, run.total_cost, run.total_tokens

The topology is checked as it is built (see `graphs.topology`) and compiled once, on the first
run after a change; runs then share the compiled plan.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType, TracebackType
from typing import Any

import anyio
from pydantic import ValidationError

from amaos_llm import Budget
from amaos_llm.budget import money
from amaos_llm.telemetry import GraphTelemetry
from graphs.errors import RunFailed
from graphs.events import Event, EventBus, Listener
from graphs.mermaid import to_mermaid
from graphs.results import RunResult
from graphs.scheduler import RunSettings, execute
from graphs.streaming import MapStream, map_stream
from graphs.topology import Edge, Plan, Topology, When
from nodes import Node, Payload, TaskMessage

RunInput = str | Payload | Mapping[str, Any]
RunBudget = float | int | Decimal | str | Budget | None


class GraphOrchestrator:
    """Runs a graph of nodes.

    - `max_concurrency`: at most this many node tasks at once across all runs (None: no limit,
      so a wide fan-out is never serialised)
    - `node_timeout`: seconds per task for nodes that set no `timeout` of their own
    - `fail_fast`: stop a run at its first failed node and raise `RunFailed`; otherwise failures
      are results, and the rest of the graph runs on
    - `budget_usd`: what each run may spend, all its LLM calls together (None: no cap). A node
      whose call no model fits gets an error result (`BudgetExceeded`), and the run goes on
      unless `fail_fast`
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        node_timeout: float | None = None,
        fail_fast: bool = False,
        name: str = "graph",
        budget_usd: float | int | Decimal | str | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1 (or None for no limit)")
        self.name = name
        self.budget_usd: Decimal | None = None if budget_usd is None else money(budget_usd)
        self.max_concurrency, self.node_timeout, self.fail_fast = max_concurrency, node_timeout, fail_fast
        self.bus = EventBus()
        self._topology = Topology()
        self._plan: Plan | None = None
        self._limiter = anyio.CapacityLimiter(max_concurrency) if max_concurrency else None
        self._initialized = False  # False again after aclose(): the next run opens everything again
        self._init_lock: anyio.Lock | None = None
        self._resources: list[AbstractAsyncContextManager[Any]] = []  # see `own`
        self._run_settings: dict[tuple[bool, float | None], RunSettings] = {}
        self._last_settings: RunSettings | None = None
        self._run_prefix = secrets.token_hex(4)
        self._run_counter = itertools.count(1)
        # Decided when the orchestrator is built, like a manager's: None unless a tracer provider is set.
        self._telemetry = GraphTelemetry.create()
        self._traced: tuple[Plan, Plan] | None = None  # (plan, the same with each node's handle in a span)

    def instrument(self, tracer_provider: Any = None) -> bool:
        """Record `run {name}` and `node {id}` spans through `tracer_provider` (None: the global one,
        if one is set now). Returns whether spans will be recorded."""
        self._telemetry = GraphTelemetry.create(tracer_provider)
        self._traced = None
        return self._telemetry is not None

    # -- building -----------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Open what the orchestrator owns (`own`), then initialize every registered node (later
        ones are initialized as they register). A run, `run_many` or `iter_runs` on an orchestrator
        that is not initialized, or was closed, initializes it first."""
        if self._initialized:
            return
        for resource in self._resources:
            await resource.__aenter__()
        for node in self._topology.nodes.values():
            await node.initialize()
        self._initialized = True

    def own(self, resource: AbstractAsyncContextManager[Any]) -> None:
        """Open `resource` whenever the orchestrator opens, before its nodes initialize, and close it
        after they close: what its nodes share, as a pipeline's `managers:`. It must be an async
        context manager that can be entered again once it has exited, as an `LLMManager` can (and
        then keeps its stats and budget)."""
        self._resources.append(resource)

    async def register_node(self, node: Node) -> Node:
        self.add_node(node)
        if self._initialized:
            await node.initialize()
        return node

    def add_node(self, node: Node) -> Node:
        """Register without initializing (for building a graph outside async code)."""
        self._topology.add_node(node)
        self._plan = None
        node.on_stream = self._stream_event
        return node

    def _stream_event(self, task: TaskMessage, kind: str, text: str) -> None:
        if self.bus.listeners:  # no event is built when nobody listens
            self.bus.emit(Event(kind, task.run_id, task.node_id, task_id=task.task_id, text=text))  # type: ignore[arg-type]

    def connect(self, src: str, dst: str, when: When = None) -> Edge:
        """Send `src`'s results to `dst`; with `when`, only those for which it holds.

        `when` is a route name of a router `src`, a `Condition` (or its dict form), or a callable
        taking the `ResultMessage` (a callable cannot be written to YAML).
        """
        edge = self._topology.add_edge(src, dst, when)
        self._plan = None
        return edge

    @property
    def nodes(self) -> Mapping[str, Node]:
        return MappingProxyType(self._topology.nodes)

    @property
    def edges(self) -> Sequence[Edge]:
        return tuple(self._topology.edges)

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = self._topology.compile()
        return self._plan

    # -- running ------------------------------------------------------------------------------

    def run(
        self, inputs: RunInput, *, metadata: Mapping[str, Any] | None = None, fail_fast: bool | None = None,
        budget_usd: RunBudget = None,
    ) -> Coroutine[Any, Any, RunResult]:
        """Run the graph once: `result = await orchestrator.run(inputs)`.

        `inputs` is `{root_node_id: payload}` (when every key names a node) or one payload for
        every root: a prompt string, a `Payload`, or its dict form (`prompt` or `messages`, plus
        `system_prompt`, `temperature`, `max_tokens`, `force_model`). A bad input raises
        `ValueError` or `TypeError` when awaited.

        `budget_usd`: a number caps this run instead of the orchestrator's `budget_usd`; a
        `Budget` is a ledger shared with other runs (all of them together stay within it), on top
        of the orchestrator's per-run cap.
        """
        # A plain method handing back the run's own coroutine, not an `async def` awaiting it:
        # one frame less per run, and a thousand runs in flight hold a thousand frames.
        plan = self._plan or self.plan
        try:
            payloads = _payloads(plan, inputs)
            ledgers = self._ledgers(budget_usd) if budget_usd is not None or self.budget_usd is not None else ()
        except (TypeError, ValueError) as exc:  # a ConfigError (a negative budget) is a ValueError
            return _raising(exc)
        run_id, run_metadata, settings = self._run_id(), dict(metadata) if metadata else {}, self._settings(fail_fast)
        if self._telemetry is not None:
            return self._run_traced(self._telemetry, plan, payloads, run_id, run_metadata, settings, ledgers)
        if not self._initialized:
            return self._initialized_first(plan, payloads, run_id, run_metadata, settings, ledgers)
        return execute(plan, payloads, run_id, run_metadata, settings, ledgers)

    def _ledgers(self, budget_usd: RunBudget) -> tuple[Budget, ...]:
        """A run's ledgers: its own cap first (a fresh one per run), then one shared by runs."""
        shared = budget_usd if isinstance(budget_usd, Budget) else None
        cap = self.budget_usd if budget_usd is None or shared is not None else money(budget_usd)
        own = () if cap is None else (Budget(cap, scope="run"),)
        return (*own, shared) if shared is not None else own

    async def _initialized_first(
        self, plan: Plan, payloads: tuple[Payload, ...], run_id: str, metadata: dict[str, Any], settings: RunSettings,
        ledgers: tuple[Budget, ...],
    ) -> RunResult:
        await self._initialize_once()
        return await execute(plan, payloads, run_id, metadata, settings, ledgers)

    async def _run_traced(
        self, telemetry: GraphTelemetry, plan: Plan, payloads: tuple[Payload, ...], run_id: str,
        metadata: dict[str, Any], settings: RunSettings, ledgers: tuple[Budget, ...],
    ) -> RunResult:
        if not self._initialized:
            await self._initialize_once()
        if self._traced is None or self._traced[0] is not plan:
            wrap = telemetry.wrap
            steps = tuple(replace(s, handle=wrap(s.handle, s.node_id, _type_name(s.node))) for s in plan.steps)
            self._traced = (plan, replace(plan, steps=steps))
        with telemetry.run(self.name, run_id) as span:
            try:
                result = await execute(self._traced[1], payloads, run_id, metadata, settings, ledgers)
            except RunFailed as exc:  # a fail_fast run: its partial totals, then the error as it was
                telemetry.run_totals(span, exc.result)
                raise
            telemetry.run_totals(span, result)
        return result

    def _run_id(self) -> str:
        return f"{self._run_prefix}-{next(self._run_counter)}"

    def _settings(self, fail_fast: bool | None) -> RunSettings:
        # Built once per distinct value, not per run (a run only reads them); the last one used
        # is checked first, without building a key.
        fail_fast = self.fail_fast if fail_fast is None else bool(fail_fast)
        last = self._last_settings
        if last is not None and last.fail_fast == fail_fast and last.node_timeout == self.node_timeout:
            return last
        key = (fail_fast, self.node_timeout)
        settings = self._run_settings.get(key) or RunSettings(self.bus, self._limiter, self.node_timeout, fail_fast)
        self._run_settings[key] = self._last_settings = settings
        return settings

    def iter_runs(
        self,
        inputs: Iterable[RunInput] | AsyncIterable[RunInput],
        concurrency: int = 16,
        *,
        ordered: bool = True,
        max_pending: int | None = None,
    ) -> MapStream[tuple[Payload, ...], RunResult]:
        """Run the graph once per input, streaming: `(index, RunResult)` as runs finish.

            async with orchestrator.iter_runs(inputs, 16) as runs:
                async for index, run in runs:
                    ...

        `inputs` (an iterable or an async iterable) is consumed lazily; at most `concurrency`
        runs are in flight. With `ordered`, results come in input order; runs that finish early
        wait in a reorder buffer, and `max_pending` (default 4 × `concurrency`) bounds the runs
        started and not yet handed out: when it is reached, intake waits, so memory stays flat
        however many inputs there are. A bad input stops intake: the runs before it finish and
        are handed out, then its `ValueError`/`TypeError` is raised. A `fail_fast` run that stops
        yields its partial result (`RunFailed.result`). See `graphs.streaming` for why this is
        an `async with` rather than a bare async generator."""
        if isinstance(inputs, (str, Payload, Mapping)):
            raise TypeError("iter_runs takes an iterable of inputs; for one input, use run()")
        plan = self.plan
        settings = self._settings(None)
        if isinstance(inputs, AsyncIterable):
            prepared: Iterable[tuple[Payload, ...]] | AsyncIterable[tuple[Payload, ...]] = _async_payloads(plan, inputs)
        else:
            prepared = (_payloads(plan, item) for item in inputs)

        async def one(payloads: tuple[Payload, ...]) -> RunResult:
            if not self._initialized:
                await self._initialize_once()
            ledgers = self._ledgers(None) if self.budget_usd is not None else ()
            try:
                return await execute(plan, payloads, self._run_id(), {}, settings, ledgers)
            except RunFailed as exc:
                return exc.result

        return map_stream(prepared, one, concurrency, ordered=ordered, max_pending=max_pending)

    async def run_many(
        self,
        inputs: Iterable[RunInput],
        concurrency: int = 16,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        on_result: Callable[[int, RunResult], None] | None = None,
        total_budget_usd: float | int | Decimal | str | Budget | None = None,
    ) -> list[RunResult]:
        """Run the graph once per input, at most `concurrency` runs at a time; results in input
        order, all kept (`iter_runs` streams them instead). `on_result(index, result)` is called
        as each run finishes. A `fail_fast` run that stops contributes its partial result
        (`RunFailed.result`). A bad input fails before any run starts. `total_budget_usd` caps
        all the runs together (each still within the orchestrator's per-run `budget_usd`)."""
        items = list(inputs)
        if metadata is not None and len(metadata) != len(items):
            raise ValueError(f"{len(items)} inputs but {len(metadata)} metadata entries")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        plan = self.plan
        payloads = [_payloads(plan, item) for item in items]  # a bad input fails before any run starts
        if not self._initialized:
            await self._initialize_once()
        settings = self._settings(None)
        shared: RunBudget = total_budget_usd
        if shared is not None and not isinstance(shared, Budget):
            shared = Budget(money(shared, "total_budget_usd"), scope="run")
        budgeted = shared is not None or self.budget_usd is not None

        async def one(i: int) -> RunResult:
            try:
                run_metadata = dict(metadata[i] or {}) if metadata else {}
                ledgers = self._ledgers(shared) if budgeted else ()
                return await execute(plan, payloads[i], self._run_id(), run_metadata, settings, ledgers)
            except RunFailed as exc:
                return exc.result

        results: list[RunResult | None] = [None] * len(items)
        # Every result is kept anyway: a window as wide as the batch never stalls a worker.
        async with map_stream(range(len(items)), one, concurrency, ordered=False,
                              max_pending=max(1, len(items))) as runs:
            async for i, result in runs:
                results[i] = result
                if on_result is not None:
                    on_result(i, result)
        return [r for r in results if r is not None]

    # -- observing ----------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event)` on node_started / node_finished / run_finished; returns the
        function that unsubscribes it."""
        return self.bus.subscribe(listener)

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        """`async with orchestrator.events() as events: async for event in events: ...`"""
        return self.bus.stream()

    def to_mermaid(self) -> str:
        return to_mermaid(self._topology.nodes.values(), self._topology.edges, title=self.name)

    def get_stats(self) -> dict[str, Any]:
        return {node_id: node.get_stats() for node_id, node in self._topology.nodes.items()}

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every node, then what the orchestrator owns; the first error is raised after all
        have been closed. Running it again opens them again."""
        errors: list[BaseException] = []
        for node in self._topology.nodes.values():
            try:
                await node.aclose()
            except Exception as exc:  # noqa: BLE001 - keep closing the others, then re-raise
                errors.append(exc)
        for resource in self._resources:
            try:
                await resource.__aexit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - keep closing the others, then re-raise
                errors.append(exc)
        self._initialized = False
        if errors:
            raise errors[0]

    async def __aenter__(self) -> GraphOrchestrator:
        await self.initialize()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _initialize_once(self) -> None:
        # Concurrent first runs must not initialize the nodes twice.
        if self._init_lock is None:
            self._init_lock = anyio.Lock()
        async with self._init_lock:
            await self.initialize()

    def __repr__(self) -> str:
        return f"GraphOrchestrator(name={self.name!r}, nodes={list(self._topology.nodes)!r})"


def _type_name(node: Node) -> str:
    return node.type_name or type(node).__name__


def _payloads(plan: Plan, inputs: RunInput) -> tuple[Payload, ...]:
    """The payload of each root, in `plan.roots` order."""
    if not plan.steps:
        raise ValueError("the graph has no nodes")
    if type(inputs) is str:  # the common case, spared the Mapping check (an ABC's, so not cheap)
        return (Payload.of(inputs),) * len(plan.roots)
    if isinstance(inputs, Mapping) and inputs and all(isinstance(k, str) and k in plan.index for k in inputs):
        roots = {plan.steps[r].node_id for r in plan.roots}
        if extra := [k for k in inputs if k not in roots]:
            raise ValueError(f"{extra[0]!r} is not a root node; the roots are: {', '.join(sorted(roots))}")
        if missing := sorted(roots - set(inputs)):
            raise ValueError(f"no input for root node(s) {', '.join(missing)}; give one per root or one for all")
        return tuple(_payload(inputs[plan.steps[r].node_id]) for r in plan.roots)
    return (_payload(inputs),) * len(plan.roots)


async def _async_payloads(plan: Plan, inputs: AsyncIterable[RunInput]) -> AsyncIterator[tuple[Payload, ...]]:
    source = aiter(inputs)
    try:
        async for item in source:
            yield _payloads(plan, item)
    finally:
        # Closed with this wrapper when a stream is left early, rather than by the garbage collector.
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


async def _raising(exc: BaseException) -> RunResult:
    raise exc


def _payload(value: Any) -> Payload:
    if not isinstance(value, (str, Payload, Mapping)):
        raise TypeError(f"a run input is a str, a Payload or a mapping, not {type(value).__name__}")
    try:
        return Payload.of(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise ValueError(f"invalid run input: {where}: {first['msg']}") from None
