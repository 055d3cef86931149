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
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from graphs.errors import RunFailed
from graphs.events import Event, EventBus
from graphs.results import RunResult
from graphs.topology import Out, Plan, Step
from nodes import Payload, ResultMessage, TaskMessage
from nodes.messages import trusted

Ready = tuple[int, tuple[ResultMessage, ...], Payload]
_TASK_NAME = "amaos-graph-node"  # naming the task spares anyio deriving a name for every spawn


@dataclass(frozen=True, slots=True)
class RunSettings:
    bus: EventBus
    limiter: anyio.CapacityLimiter | None = None  # bounds concurrent node tasks; None: no bound
    node_timeout: float | None = None  # for nodes that set no timeout of their own
    fail_fast: bool = False


async def execute(
    plan: Plan, payloads: dict[int, Payload], run_id: str, metadata: dict[str, Any], settings: RunSettings
) -> RunResult:
    run = _Run(plan, run_id, metadata, settings)
    start = time.perf_counter()
    roots = plan.roots
    if plan.linear:
        await run.drive(roots[0], (), payloads[roots[0]])
    else:
        try:
            async with anyio.create_task_group() as tg:
                run.tg = tg
                for root in roots[1:]:
                    tg.start_soon(run.drive, root, (), payloads[root], name=_TASK_NAME)
                await run.drive(roots[0], (), payloads[roots[0]])
        except BaseExceptionGroup as group:
            # Node failures never get here (they are results); a bug in a `when` callable or a
            # listener does, and should surface as itself, as it does in a linear plan.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    result = RunResult.build(
        run_id, run.trace, plan.leaves, plan.node_ids, run.errors, time.perf_counter() - start, metadata
    )
    if run.stopped is not None:
        raise RunFailed(run.stopped, run.errors[run.stopped], result)
    if run.listeners:
        settings.bus.emit(Event("run_finished", run_id, run=result))
    return result


class _Run:
    """The state of one run. Plain lists indexed by node position: the hot loop does no hashing."""

    __slots__ = (
        "errors", "fired", "inbox", "limiter", "listeners", "metadata", "node_timeout", "origin",
        "pending", "run_id", "settings", "steps", "stopped", "tg", "trace",
    )

    def __init__(self, plan: Plan, run_id: str, metadata: dict[str, Any], settings: RunSettings) -> None:
        self.steps = plan.steps
        self.run_id, self.metadata, self.settings = run_id, metadata, settings
        self.listeners = settings.bus.listeners  # the live list: observers may join mid-run
        self.limiter, self.node_timeout = settings.limiter, settings.node_timeout
        self.pending = [s.n_inputs for s in plan.steps]
        self.fired = [0] * len(plan.steps)
        self.inbox: dict[int, list[tuple[ResultMessage, Payload] | None]] = {}
        self.trace: list[ResultMessage] = []
        self.errors: dict[str, str] = {}
        self.origin: dict[str, str] = {}  # node that relayed a failure → node where it happened
        self.stopped: str | None = None  # fail_fast: the node that failed
        self.tg: TaskGroup | None = None

    async def drive(self, i: int, inputs: tuple[ResultMessage, ...], payload: Payload) -> None:
        steps, pending = self.steps, self.pending
        while True:
            step = steps[i]
            result = await self.step(step, inputs, payload)
            if self.stopped is not None:
                return
            nxt = step.next_only
            if nxt >= 0 and pending[nxt]:  # a chain link: no edge bookkeeping needed
                pending[nxt] = 0
                i, inputs = nxt, (result,)
                continue
            ready: list[Ready] = []
            for out in step.outs:
                test = out.test
                self.arrive(out, result if test is None or test(result) else None, payload, ready)
            if not ready:
                return
            if len(ready) > 1:
                start_soon = self.tg.start_soon  # type: ignore[union-attr]  # only linear plans have no group
                for more in ready[1:]:
                    start_soon(self.drive, *more, name=_TASK_NAME)
            i, inputs, payload = ready[0]

    async def step(self, step: Step, inputs: tuple[ResultMessage, ...], payload: Payload) -> ResultMessage:
        node_id, n = step.node_id, self.fired[step.index]
        self.fired[step.index] = n + 1
        task_id = f"{self.run_id}:{node_id}" if not n else f"{self.run_id}:{node_id}#{n}"
        if not step.accepts_errors:
            for r in inputs:
                if r.error is not None:
                    return self.record(step, self.relay(step, task_id, r), own=False)
        task = trusted(
            TaskMessage, task_id=task_id, run_id=self.run_id, node_id=node_id, payload=payload,
            inputs=inputs, metadata=self.metadata, iteration=n,
        )
        if self.listeners:
            self.settings.bus.emit(Event("node_started", self.run_id, node_id))
        timeout = step.timeout if step.timeout is not None else self.node_timeout
        try:
            if timeout is None and self.limiter is None:
                result = await step.handle(task)
            else:
                result = await self.guarded(step, task, timeout)
        except Exception as exc:  # noqa: BLE001 - a node's failure is its result: the delivery guarantee
            result = task.fail(f"{type(exc).__name__}: {exc}")
        if type(result) is not ResultMessage or result.task_id != task_id:
            result = _readdressed(task, result)
        if result.error is not None and step.accepts_errors:
            return self.record(step, result, own=not self.passed_on(step, inputs, result.error))
        return self.record(step, result, own=True)

    def passed_on(self, step: Step, inputs: tuple[ResultMessage, ...], error: str) -> bool:
        """Whether a node that accepts errors returned an input's error: a relay, not a failure."""
        for r in inputs:
            if r.error == error:
                self.origin[step.node_id] = self.origin.get(r.node_id, r.node_id)
                return True
        return False

    async def guarded(self, step: Step, task: TaskMessage, timeout: float | None) -> ResultMessage:
        if self.limiter is not None:
            async with self.limiter:
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
            self.stopped = node_id
            if self.tg is not None:
                self.tg.cancel_scope.cancel()

    def relay(self, step: Step, task_id: str, failed: ResultMessage) -> ResultMessage:
        """The result of a node not run because an input failed: it names where the failure began."""
        origin = self.origin.get(failed.node_id, failed.node_id)
        self.origin[step.node_id] = origin
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
        box = self.inbox.get(dst)
        if box is None:
            box = self.inbox[dst] = [None] * step.n_inputs
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
            box = self.inbox.get(member.index)
            if box is not None:
                for slot in member.inner_slots:
                    box[slot] = None
        ready.append((head, (result,), payload))


def _readdressed(task: TaskMessage, result: Any) -> ResultMessage:
    """A node returned something other than this task's `ResultMessage`: fix or report it."""
    if isinstance(result, ResultMessage):
        return result.model_copy(update={"task_id": task.task_id, "run_id": task.run_id, "node_id": task.node_id})
    return task.fail(f"handle() returned {type(result).__name__}, not a ResultMessage")
