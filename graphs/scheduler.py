"""The run loop: executes one run of a compiled `Plan`, dataflow-style.

A node fires the moment all its inputs have arrived: no supersteps, so a slow branch never holds
back an unrelated fast one. A node that finishes continues, in the same task, with the first
successor it made ready, and spawns one task per further ready successor; a chain therefore runs
in a single task, and a one-chain plan runs in the caller's task with no task group at all.

Delivery: each task a node receives yields exactly one `ResultMessage` (an exception, a timeout
or a failed input become an error result), and that result goes to every outgoing edge whose
condition holds. An edge whose condition does not hold carries "nothing": a node all of whose
inputs carried nothing is skipped, and its own edges carry nothing in turn.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

import anyio

from amaos_llm import Budget
from graphs.errors import RunFailed
from graphs.events import Event, EventBus
from graphs.results import RunResult
from graphs.taskgroup import TaskGroup, create_task_group
from graphs.topology import Out, Plan, Step
from nodes import Payload, ResultMessage, TaskMessage
from nodes.messages import task_message, trusted

Ready = tuple[int, tuple[ResultMessage, ...], Payload]


@dataclass(frozen=True, slots=True)
class RunSettings:
    bus: EventBus
    limiter: anyio.CapacityLimiter | None = None  # bounds concurrent node tasks; None: no bound
    node_timeout: float | None = None  # for nodes that set no timeout of their own
    fail_fast: bool = False


class _Stopped(Exception):
    """Raised by a `fail_fast` run's first failure: it ends the run's task group, cancelling the rest."""


def execute(
    plan: Plan, payloads: tuple[Payload, ...], run_id: str, metadata: dict[str, Any], settings: RunSettings,
    ledgers: tuple[Budget, ...] = (),
) -> Coroutine[Any, Any, RunResult]:
    """The coroutine of one run. A plan that is one chain runs as that single coroutine (its
    `drive` ends the run): with a thousand runs in flight, a frame less each is a thousand objects
    fewer for the garbage collector. Other plans drive their branches in a task group.

    `ledgers`: the budgets every task of the run spends against (its own cap first, then any
    shared by several runs); nodes with a `budget_usd` get one more, theirs for this run."""
    run = _Run(plan, run_id, metadata, settings, ledgers)
    if plan.linear:
        return cast("Coroutine[Any, Any, RunResult]", run.drive(plan.roots[0], (), payloads[0], whole=True))
    return run.branches(payloads)


class _Run:
    """The state of one run. Plain lists indexed by node position: the hot loop does no hashing."""

    __slots__ = (
        "direct", "errors", "fired", "inbox", "ledgers", "listeners", "metadata", "node_ledgers", "origin", "plan",
        "pending", "run_id", "settings", "steps", "stopped", "tg", "trace",
    )

    def __init__(
        self, plan: Plan, run_id: str, metadata: dict[str, Any], settings: RunSettings, ledgers: tuple[Budget, ...]
    ) -> None:
        self.plan, self.steps = plan, plan.steps
        self.run_id, self.metadata, self.settings = run_id, metadata, settings
        self.listeners = settings.bus.listeners  # the live list: observers may join mid-run
        # Arrays, not lists: they hold no objects, so the garbage collector never walks them, and a
        # thousand runs in flight would otherwise be two thousand more objects on every pass.
        self.pending = plan.n_inputs[:]
        self.fired = plan.zeros[:]
        self.direct = settings.limiter is None and settings.node_timeout is None  # nothing to wrap a step in
        # Inputs waiting at nodes with several of them, made on the first such arrival.
        self.inbox: dict[int, list[tuple[ResultMessage, Payload] | None]] | None = None
        self.trace: list[ResultMessage] = []
        self.errors: dict[str, str] = {}
        self.origin: dict[str, str] | None = None  # node that relayed a failure → node where it happened
        self.stopped: str | None = None  # fail_fast: the node that failed
        self.tg: TaskGroup | None = None
        self.ledgers = ledgers
        # Per node index, the ledgers its tasks carry; None when the run has no budget at all, so
        # that an uncapped run builds its tasks exactly as before.
        self.node_ledgers: dict[int, tuple[Budget, ...]] | None = {} if ledgers or plan.budgeted else None

    async def branches(self, payloads: tuple[Payload, ...]) -> RunResult:
        start = time.perf_counter()
        try:
            await self.fan_out(self.plan.roots, payloads)
        except _Stopped:
            pass
        return self.result(start)

    def result(self, start: float) -> RunResult:
        plan = self.plan
        result = RunResult.build(
            self.run_id, self.trace, plan.leaves, plan.node_ids, self.errors, time.perf_counter() - start,
            self.metadata, self.ledgers,
        )
        if self.stopped is not None:
            raise RunFailed(self.stopped, self.errors[self.stopped], result)
        if self.listeners:
            self.settings.bus.emit(Event("run_finished", self.run_id, run=result))
        return result

    async def fan_out(self, roots: tuple[int, ...], payloads: tuple[Payload, ...]) -> None:
        try:
            async with create_task_group() as tg:
                self.tg = tg
                for k in range(1, len(roots)):
                    tg.start_soon(self.drive, roots[k], (), payloads[k])
                await self.drive(roots[0], (), payloads[0])
        except BaseExceptionGroup as group:
            _, rest = group.split(_Stopped)
            if rest is None:  # `fail_fast` stopped the run, as asked
                raise _Stopped from None
            # Node failures never get here (they are results); a bug in a `when` callable or a
            # listener does, and should surface as itself, as it does in a linear plan.
            if len(rest.exceptions) == 1:
                raise rest.exceptions[0] from None
            raise rest from None

    async def drive(
        self, i: int, inputs: tuple[ResultMessage, ...], payload: Payload, *, whole: bool = False
    ) -> RunResult | None:
        """Runs node `i`, then what it makes ready, in this task (spawning a task per further ready
        node). With `whole`, for a one-chain plan, this is the run's own coroutine: it returns the
        `RunResult`."""
        start = time.perf_counter() if whole else 0.0
        steps, pending = self.steps, self.pending
        try:
            while True:
                step = steps[i]
                # The await sits here, between two plain calls, rather than in a `step` coroutine:
                # one coroutine less per node step to create, resume and keep alive.
                task = self.task_for(step, inputs, payload)
                failed = None if step.accepts_errors else _first_failed(inputs)
                if failed is not None:
                    result = self.record(step, self.relay(step, task.task_id, failed), own=False)
                else:
                    if self.listeners:
                        self.settings.bus.emit(Event("node_started", self.run_id, step.node_id))
                    try:
                        if self.direct and step.timeout is None:
                            result = await step.handle(task)
                        else:
                            result = await self.guarded(step, task)
                    except Exception as exc:  # noqa: BLE001 - a node's failure is its result: the delivery guarantee
                        result = task.fail(f"{type(exc).__name__}: {exc}")
                    result = self.finish(step, task, inputs, result)
                if self.stopped is not None:
                    raise _Stopped
                nxt = step.next_only
                if nxt >= 0 and pending[nxt]:  # a chain link: no edge bookkeeping needed
                    pending[nxt] = 0
                    i, inputs = nxt, (result,)
                    continue
                ready: list[Ready] = []
                for out in step.outs:
                    test = out.test
                    self.arrive(out, result if test is None or test(result) else None, payload, ready)
                if self.stopped is not None:  # a loop ran out of iterations
                    raise _Stopped
                if not ready:
                    break
                if len(ready) > 1:
                    start_soon = self.tg.start_soon  # type: ignore[union-attr]  # only linear plans have no group
                    for more in ready[1:]:
                        start_soon(self.drive, *more)
                i, inputs, payload = ready[0]
        except _Stopped:
            if not whole:
                raise
        return self.result(start) if whole else None

    def task_for(self, step: Step, inputs: tuple[ResultMessage, ...], payload: Payload) -> TaskMessage:
        index = step.index
        n = self.fired[index]
        self.fired[index] = n + 1
        node_id = step.node_id
        task_id = f"{self.run_id}:{node_id}" if not n else f"{self.run_id}:{node_id}#{n}"
        if self.node_ledgers is None:
            return task_message(task_id, self.run_id, node_id, payload, inputs, self.metadata, n)
        return task_message(task_id, self.run_id, node_id, payload, inputs, self.metadata, n, self.ledgers_for(step))

    def ledgers_for(self, step: Step) -> tuple[Budget, ...]:
        """The run's ledgers, plus the node's own for this run (made at its first task, kept
        across the laps of a loop) when it sets `budget_usd`."""
        assert self.node_ledgers is not None
        ledgers = self.node_ledgers.get(step.index)
        if ledgers is None:
            if step.budget_usd is None:
                ledgers = self.ledgers
            else:
                own = Budget(step.budget_usd, scope="node", key=f"run:{self.run_id}:{step.node_id}")
                ledgers = (*self.ledgers, own)
            self.node_ledgers[step.index] = ledgers
        return ledgers

    def finish(
        self, step: Step, task: TaskMessage, inputs: tuple[ResultMessage, ...], result: ResultMessage
    ) -> ResultMessage:
        if type(result) is not ResultMessage or result.task_id != task.task_id:
            result = _readdressed(task, result)
        if result.error is not None and step.accepts_errors:
            return self.record(step, result, own=not self.passed_on(step, inputs, result.error))
        return self.record(step, result, own=True)

    def passed_on(self, step: Step, inputs: tuple[ResultMessage, ...], error: str) -> bool:
        """Whether a node that accepts errors returned an input's error: a relay, not a failure."""
        for r in inputs:
            if r.error == error:
                origin = self.origin = self.origin or {}
                origin[step.node_id] = origin.get(r.node_id, r.node_id)
                return True
        return False

    async def guarded(self, step: Step, task: TaskMessage) -> ResultMessage:
        settings = self.settings
        timeout = step.timeout if step.timeout is not None else settings.node_timeout
        if settings.limiter is not None:
            async with settings.limiter:
                return await self.timed(step, task, timeout)
        return await self.timed(step, task, timeout)

    async def timed(self, step: Step, task: TaskMessage, timeout: float | None) -> ResultMessage:
        if timeout is None:
            result: ResultMessage = await step.handle(task)
            return result
        # A bare CancelScope: cheaper than fail_after, and the node's own TimeoutError stays its own.
        with anyio.CancelScope(deadline=anyio.current_time() + timeout):
            result = await step.handle(task)
            return result
        return task.fail(f"timed out after {timeout:g} s")

    def record(self, step: Step, result: ResultMessage, *, own: bool) -> ResultMessage:
        step.stats.record(result)
        self.trace.append(result)
        if own and result.error is not None:
            self.fail(step.node_id, result.error)
        if self.listeners:
            self.settings.bus.emit(Event("node_finished", self.run_id, step.node_id, result=result))
        return result

    def fail(self, node_id: str, error: str) -> None:
        self.errors[node_id] = error
        if self.settings.fail_fast and self.stopped is None:
            self.stopped = node_id  # `drive` raises `_Stopped` as soon as it sees this

    def relay(self, step: Step, task_id: str, failed: ResultMessage) -> ResultMessage:
        """The result of a node not run because an input failed: it names where the failure began."""
        origins = self.origin = self.origin or {}
        origin = origins[step.node_id] = origins.get(failed.node_id, failed.node_id)
        error = f"upstream {origin!r} failed: {self.errors.get(origin, failed.error)}"
        return trusted(ResultMessage, task_id=task_id, run_id=self.run_id, node_id=step.node_id, error=error)

    def arrive(self, out: Out, result: ResultMessage | None, payload: Payload, ready: list[Ready]) -> None:
        """One edge delivers `result` (None: nothing, its condition did not hold) to `out.dst`."""
        dst = out.dst
        if out.back:
            if result is not None:
                self.loop_back(dst, result, payload, ready)
            return
        left = self.pending[dst]
        if left == 0:
            # dst has run already, so it sits after a loop: each new message runs it again, alone.
            if result is not None:
                ready.append((dst, (result,), payload))
            return
        step = self.steps[dst]
        if step.n_inputs == 1:
            self.pending[dst] = 0
            if result is not None:
                ready.append((dst, (result,), payload))
            else:
                self.skip(dst, payload, ready)
            return
        inbox = self.inbox
        if inbox is None:
            inbox = self.inbox = {}
        box = inbox.get(dst)
        if box is None:
            box = inbox[dst] = [None] * step.n_inputs
        if result is not None:
            box[out.slot] = (result, payload)
        self.pending[dst] = left = left - 1
        if left:
            return
        got = [item for item in box if item is not None]
        if got:
            ready.append((dst, tuple(r for r, _ in got), got[0][1]))
        else:
            self.skip(dst, payload, ready)

    def skip(self, i: int, payload: Payload, ready: list[Ready]) -> None:
        for out in self.steps[i].outs:
            self.arrive(out, None, payload, ready)

    def loop_back(self, head: int, result: ResultMessage, payload: Payload, ready: list[Ready]) -> None:
        step = self.steps[head]
        limit = step.max_iterations or 0
        if self.fired[head] >= limit:
            self.fail(step.node_id, f"stopped after max_iterations={limit}: the loop did not exit")
            return
        for member in step.loop_body:
            self.pending[member.index] += len(member.inner_slots)
            box = self.inbox.get(member.index) if self.inbox is not None else None
            if box is not None:
                for slot in member.inner_slots:
                    box[slot] = None
        ready.append((head, (result,), payload))


def _first_failed(inputs: tuple[ResultMessage, ...]) -> ResultMessage | None:
    for r in inputs:
        if r.error is not None:
            return r
    return None


def _readdressed(task: TaskMessage, result: Any) -> ResultMessage:
    """A node returned something other than this task's `ResultMessage`: fix or report it."""
    if isinstance(result, ResultMessage):
        return result.model_copy(update={"task_id": task.task_id, "run_id": task.run_id, "node_id": task.node_id})
    return task.fail(f"handle() returned {type(result).__name__}, not a ResultMessage")
