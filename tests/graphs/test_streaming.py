"""`GraphOrchestrator.iter_runs` and the stream under it: order, bounds, laziness, early exits."""

from __future__ import annotations

import random

import anyio
import pytest

from graphs import GraphOrchestrator
from graphs.streaming import map_stream
from nodes import FunctionNode, Payload
from tests.support.backends import BACKENDS

from .graph_builders import build

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # Pure graph semantics, no SDK or HTTP fake: runs on asyncio and trio (tests/support/backends.py).
    return request.param


def sleepy_graph(delays: dict[str, float], running: list[int] | None = None) -> GraphOrchestrator:
    """a -> b; `a` sleeps `delays[prompt]` seconds (0 if absent). `running` tracks [now, most]."""

    async def nap(payload: Payload) -> str:
        if running is not None:
            running[0] += 1
            running[1] = max(running[1], running[0])
        await anyio.sleep(delays.get(payload.prompt, 0))
        if running is not None:
            running[0] -= 1
        return payload.prompt

    return build([("a", "b")], nodes=[FunctionNode("a", fn=nap)])


async def test_iter_runs_yields_every_input_once_in_input_order_despite_random_delays():
    rng = random.Random(7)
    prompts = [str(i) for i in range(300)]
    running = [0, 0]
    orchestrator = sleepy_graph({p: rng.random() * 0.004 for p in prompts}, running)
    got = []
    async with orchestrator.iter_runs(prompts, 8) as runs:
        async for index, run in runs:
            got.append((index, run.outputs["b"].content))
    assert got == [(i, f"{i}.b") for i in range(300)]
    assert running[1] == 8  # at most `concurrency` in flight, and the stream did fill it


async def test_the_reorder_buffer_and_intake_never_exceed_the_window():
    rng = random.Random(11)
    concurrency, window, n = 6, 10, 400
    delays = {str(i): rng.random() * 0.003 for i in range(n)}
    consumed = 0
    most = {"buffered": 0, "pending": 0, "ahead": 0}
    stream = None

    def watch() -> None:
        assert stream is not None
        most["buffered"] = max(most["buffered"], stream.buffered)
        most["pending"] = max(most["pending"], stream.pending)

    def inputs():
        for i in range(n):
            # Taken only when the window has room: never `window` or more ahead of the consumer.
            most["ahead"] = max(most["ahead"], i - consumed + 1)
            yield str(i)

    async def nap(payload: Payload) -> str:
        await anyio.sleep(delays[payload.prompt])
        watch()
        return payload.prompt

    orchestrator = build([("a", "b")], nodes=[FunctionNode("a", fn=nap)])
    stream = orchestrator.iter_runs(inputs(), concurrency, max_pending=window)
    async with stream as runs:
        async for index, _ in runs:
            assert index == consumed
            watch()
            consumed += 1
    assert consumed == n
    assert most["ahead"] <= window and most["pending"] <= window and most["buffered"] <= window
    assert most["buffered"] > 0  # runs did finish out of order and waited their turn


async def test_a_slow_run_stalls_intake_at_the_window():
    taken = []

    def inputs():
        for i in range(100):
            taken.append(i)
            yield str(i)

    orchestrator = sleepy_graph({"0": 0.2})
    first = None
    async with orchestrator.iter_runs(inputs(), 4, max_pending=8) as runs:
        async for index, run in runs:
            if index == 0:
                first = len(taken)  # the others finished long ago; they waited for run 0 instead of piling up
                break
    assert first == 8


async def test_unordered_yields_runs_as_they_finish():
    orchestrator = sleepy_graph({"0": 0.05})
    async with orchestrator.iter_runs(["0", "1", "2"], 3, ordered=False) as runs:
        order = [index async for index, _ in runs]
    assert order[-1] == 0 and sorted(order) == [0, 1, 2]


async def test_inputs_can_be_an_async_iterable():
    async def inputs():
        for i in range(50):
            await anyio.sleep(0)
            yield str(i)

    async with sleepy_graph({}).iter_runs(inputs(), 5) as runs:
        got = [(index, run.outputs["b"].content) async for index, run in runs]
    assert got == [(i, f"{i}.b") for i in range(50)]


async def test_a_bad_input_stops_intake_after_the_runs_before_it():
    taken = []

    def inputs():
        for item in ["0", "1", "2", {"prompt": "x", "bogus": 1}, "4", "5"]:
            taken.append(item)
            yield item

    got = []
    with pytest.raises(ValueError, match="invalid run input: bogus: Extra inputs are not permitted"):
        async with sleepy_graph({"0": 0.02}).iter_runs(inputs(), 2) as runs:
            async for index, run in runs:
                got.append((index, run.outputs["b"].content))
    assert got == [(0, "0.b"), (1, "1.b"), (2, "2.b")]
    assert len(taken) == 4  # nothing after the bad input was read


async def test_an_error_raised_by_the_inputs_comes_after_the_runs_before_it():
    def inputs():
        yield from ["0", "1"]
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        async with sleepy_graph({}).iter_runs(inputs(), 4) as runs:
            async for index, _ in runs:
                got.append(index)
    assert got == [0, 1]


async def test_leaving_early_cancels_the_runs_in_flight_and_takes_no_more_inputs():
    taken, finished = [], []

    def inputs():
        for i in range(1000):
            taken.append(i)
            yield str(i)

    async def nap(payload: Payload) -> str:
        await anyio.sleep(0 if payload.prompt == "0" else 10)
        finished.append(payload.prompt)
        return payload.prompt

    orchestrator = build([("a", "b")], nodes=[FunctionNode("a", fn=nap)])
    with anyio.fail_after(5):
        async with orchestrator.iter_runs(inputs(), 4) as runs:
            async for _ in runs:
                break
    assert finished == ["0"]
    assert len(taken) == 5  # the first, then one more per free worker; none after leaving


async def test_a_bug_in_the_work_surfaces_as_itself_and_cancels_the_rest():
    cancelled = []

    async def broken(item: int) -> int:
        if item == 5:
            await anyio.sleep(0.05)  # the runs before it are long handed out by then
            raise KeyError(item)
        try:
            await anyio.sleep(0.001 if item < 5 else 10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(item)
            raise
        return item

    got = []
    with pytest.raises(KeyError, match="5"):
        async with map_stream(range(100), broken, 3) as results:
            async for index, _ in results:
                got.append(index)
    assert got == [0, 1, 2, 3, 4]
    assert sorted(cancelled) == [6, 7]


async def test_iterating_without_entering_says_how_to_use_it():
    with pytest.raises(RuntimeError, match=r"enter the stream first: `async with \.\.\. as results"):
        async for _ in sleepy_graph({}).iter_runs(["x"], 1):
            pass


async def test_one_input_instead_of_an_iterable_is_refused():
    with pytest.raises(TypeError, match="iter_runs takes an iterable of inputs; for one input, use run()"):
        sleepy_graph({}).iter_runs("hello", 1)


@pytest.mark.parametrize(("concurrency", "max_pending", "message"),
                         [(0, None, "concurrency must be at least 1"), (2, 0, "max_pending must be at least 1")])
async def test_bounds_must_be_positive(concurrency, max_pending, message):
    with pytest.raises(ValueError, match=message):
        sleepy_graph({}).iter_runs(["x"], concurrency, max_pending=max_pending)


async def test_no_inputs_yield_nothing():
    async with sleepy_graph({}).iter_runs([], 4) as runs:
        assert [r async for r in runs] == []


async def test_a_fail_fast_run_yields_its_partial_result():
    def boom(_):
        raise RuntimeError("boom")

    orchestrator = build([("a", "b")], nodes=[FunctionNode("a", fn=boom)])
    orchestrator.fail_fast = True
    async with orchestrator.iter_runs(["x", "y"], 2) as runs:
        got = [(i, run.errors) async for i, run in runs]
    assert got == [(0, {"a": "RuntimeError: boom"}), (1, {"a": "RuntimeError: boom"})]


async def test_leaving_early_from_an_async_source_is_clean():
    pulled = []

    async def inputs():
        for i in range(1000):
            pulled.append(i)
            yield str(i)

    async with sleepy_graph({}).iter_runs(inputs(), 2, max_pending=2) as runs:
        async for index, _ in runs:
            if index == 3:
                break
    assert 4 <= len(pulled) <= 6  # what was handed out, plus at most the window
