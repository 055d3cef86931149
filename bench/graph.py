"""Benchmark 4: graph execution, ours (`GraphOrchestrator`) vs LangGraph (`StateGraph`).

The same three shapes on both sides, built from async nodes:

- `chain`: 10 no-op nodes in a line; time per node step (a run's time / 10).
- `fanout`: a root, 100 branches that each sleep 10 ms, a join; wall time per run.
- `concurrent`: 1,000 runs at once (`gather`) of a 3-node chain whose nodes sleep 10 ms; wall
  time, and the peak resident memory of the first such round minus the memory before it.

LangGraph also runs the chain with sync nodes through `invoke` (its fastest path); the report
compares ours with the faster of its two. The `asyncio` side is the floor for the sleeping
shapes: the same sleeps as plain coroutines under `asyncio.gather`, with no graph at all. The
`contract` side (concurrent shape) adds what the node contract itself requires, the pydantic
messages and the `RunResult`, with no scheduler: ours minus it is the orchestrator's own cost.

The chain and the fan-out time every side in one process, alternating repeats, so that a busy
moment on the machine weighs on all sides alike. The concurrent shape measures memory, so it
runs one side per process:

    python -m bench.graph --shape chain --sides ours,langgraph,langgraph_sync [--quick]
    python -m bench.graph --shape concurrent --sides ours [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from bench.timing import alternating, emit, metric, peak_rss_mb, rss_mb, value

CHAIN, BRANCHES, RUNS, SLEEP = 10, 100, 1000, 0.01
# runs per repeat (at once, for `concurrent`), repeats, warm-up runs
FULL = {"chain": (2000, 5, 200), "fanout": (30, 5, 5), "concurrent": (RUNS, 15, 10)}
QUICK = {"chain": (300, 3, 50), "fanout": (10, 3, 2), "concurrent": (RUNS, 5, 10)}

Run = Callable[[], Awaitable[Any]]


# -- ours ---------------------------------------------------------------------------------------

async def _noop(_: Any) -> str:
    return ""


async def _nap(_: Any) -> str:
    await asyncio.sleep(SLEEP)
    return ""


def ours(shape: str) -> Run:
    from graphs import GraphOrchestrator
    from nodes import FunctionNode, JoinNode

    g = GraphOrchestrator()
    if shape == "fanout":
        g.add_node(FunctionNode(id="root", fn=_noop))
        g.add_node(JoinNode(id="join"))
        for i in range(BRANCHES):
            g.add_node(FunctionNode(id=f"b{i}", fn=_nap))
            g.connect("root", f"b{i}")
            g.connect(f"b{i}", "join")
    else:
        length, fn = (CHAIN, _noop) if shape == "chain" else (3, _nap)
        for i in range(length):
            g.add_node(FunctionNode(id=f"n{i}", fn=fn))
            if i:
                g.connect(f"n{i - 1}", f"n{i}")

    def run() -> Any:  # the run's own coroutine: no wrapper frame of the benchmark's in the figures
        return g.run("go")

    return run


# -- LangGraph ----------------------------------------------------------------------------------

class _State(TypedDict):
    text: str
    results: Annotated[list[str], operator.add]


async def _lg_noop(_: _State) -> dict[str, Any]:
    return {}


def _lg_sync_noop(_: _State) -> dict[str, Any]:
    return {}


async def _lg_nap(_: _State) -> dict[str, Any]:
    await asyncio.sleep(SLEEP)
    return {"results": [""]}


def langgraph(shape: str, *, sync: bool = False) -> Run:
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(_State)
    if shape == "fanout":
        g.add_node("root", _lg_noop)
        g.add_node("join", _lg_noop)
        g.add_edge(START, "root")
        for i in range(BRANCHES):
            g.add_node(f"b{i}", _lg_nap)
            g.add_edge("root", f"b{i}")
        g.add_edge([f"b{i}" for i in range(BRANCHES)], "join")  # waits for every branch
        g.add_edge("join", END)
    else:
        length = CHAIN if shape == "chain" else 3
        fn = _lg_nap if shape != "chain" else _lg_sync_noop if sync else _lg_noop
        for i in range(length):
            g.add_node(f"n{i}", fn)  # type: ignore[arg-type]
            g.add_edge(f"n{i - 1}" if i else START, f"n{i}")
        g.add_edge(f"n{length - 1}", END)
    compiled = g.compile()
    start = {"text": "go", "results": []}

    if sync:
        async def run() -> Any:
            return compiled.invoke(start)
    else:
        def run() -> Any:  # as for ours: the coroutine itself, no wrapper
            return compiled.ainvoke(start)

    return run


# -- the floor: the same sleeps with no graph ---------------------------------------------------

def plain_asyncio(shape: str) -> Run:
    if shape == "fanout":
        async def run() -> Any:
            return await asyncio.gather(*(_nap(None) for _ in range(BRANCHES)))
    else:
        async def run() -> Any:
            for _ in range(3):
                await _nap(None)

    return run


def contract(shape: str) -> Run:
    """The objects the node contract requires, with no scheduler: per step a `TaskMessage` and a
    `FunctionNode.handle` (which builds the `ResultMessage`), per run a `Payload` and a `RunResult`.
    What is left between this side and ours is the orchestrator's own cost."""
    if shape != "concurrent":
        raise ValueError("the contract floor is measured for the concurrent shape")
    from graphs.results import RunResult
    from nodes import FunctionNode, Payload
    from nodes.messages import task_message

    nodes = [FunctionNode(id=f"n{i}", fn=_nap) for i in range(3)]
    ids = tuple(n.id for n in nodes)

    async def run() -> Any:
        payload, inputs, trace, metadata = Payload.of("go"), (), [], {}
        for node in nodes:
            task = task_message(f"r:{node.id}", "r", node.id, payload, inputs, metadata, 0)
            result = await node.handle(task)
            trace.append(result)
            inputs = (result,)
        return RunResult.build("r", trace, ids[-1:], ids, {}, 0.0, metadata)

    return run


# -- measuring ----------------------------------------------------------------------------------

def many(run: Run, count: int) -> Run:
    async def all_at_once() -> Any:
        return await asyncio.gather(*(run() for _ in range(count)))

    return all_at_once


async def timed_shape(runs: dict[str, Run], shape: str, n: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """Chain or fan-out: the sides' runs alternate, repeat by repeat, in this one process."""
    count, repeats, warmup = n[shape]
    s = await alternating(runs, count=count, repeats=repeats, warmup=warmup)
    if shape == "chain":
        return {side: {"node_step": metric(s[side], "us", scale=1e6 / CHAIN), "run": metric(s[side], "us")}
                for side in runs}
    return {side: {"run": metric(s[side], "ms")} for side in runs}


async def concurrent(run: Run, n: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """`count` runs at once; the memory of the first round, the median wall time of all rounds."""
    count, repeats, warmup = n["concurrent"]
    for _ in range(warmup):  # a few single runs: code paths warm, memory not yet grown
        await run()
    before = rss_mb()
    walls = []
    for i in range(repeats):
        t0 = time.perf_counter()
        await many(run, count)()
        walls.append(time.perf_counter() - t0)
        if i == 0:
            delta = peak_rss_mb() - before
    return {"wall": value(statistics.median(walls), "s", walls), "rss_delta": value(max(0.0, delta), "MB")}


def build(side: str, shape: str) -> Run:
    if side == "ours":
        return ours(shape)
    if side == "asyncio":
        return plain_asyncio(shape)
    if side == "contract":
        return contract(shape)
    return langgraph(shape, sync=side == "langgraph_sync")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=("chain", "fanout", "concurrent"), required=True)
    parser.add_argument("--sides", required=True,
                        help="comma-separated: ours, langgraph, langgraph_sync, asyncio, contract")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sides = args.sides.split(",")
    if unknown := set(sides) - {"ours", "langgraph", "langgraph_sync", "asyncio", "contract"}:
        parser.error(f"unknown side(s): {', '.join(sorted(unknown))}")
    if args.shape == "concurrent" and len(sides) != 1:
        parser.error("concurrent measures memory: one side per process")
    if args.shape == "chain" and "asyncio" in sides:
        parser.error("the asyncio floor is for the sleeping shapes (fanout, concurrent)")
    if args.shape != "concurrent" and "contract" in sides:
        parser.error("the contract floor is measured for the concurrent shape")
    n = QUICK if args.quick else FULL
    runs = {side: build(side, args.shape) for side in sides}
    if args.shape == "concurrent":
        by_side = {sides[0]: asyncio.run(concurrent(runs[sides[0]], n))}
    else:
        by_side = asyncio.run(timed_shape(runs, args.shape, n))
    for side, metrics in by_side.items():
        emit({"benchmark": "graph", "side": side, "shape": args.shape, "metrics": metrics})


if __name__ == "__main__":
    main()
