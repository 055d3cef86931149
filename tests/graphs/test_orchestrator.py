from decimal import Decimal

import anyio
import pytest

from amaos_llm import Usage
from graphs import GraphOrchestrator, RunFailed, RunResult
from nodes import FunctionNode, JoinNode, Node, ResultMessage, RouterNode
from tests.support.backends import BACKENDS

from .graph_builders import build, raising, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # Pure graph semantics, no SDK or HTTP fake: runs on asyncio and trio (tests/support/backends.py).
    return request.param


async def test_a_chain_passes_each_result_on():
    run = await build([("a", "b"), ("b", "c")]).run("x")
    assert run.outputs["c"].content == "x.a.b.c"
    assert [r.node_id for r in run.trace] == ["a", "b", "c"]
    assert (run.ok, run.errors, run.skipped) == (True, {}, ())


async def test_results_hold_every_node_and_outputs_the_leaves():
    run = await build([("a", "b"), ("a", "c")]).run("x")
    assert set(run.results) == {"a", "b", "c"}
    assert {k: v.content for k, v in run.outputs.items()} == {"b": "x.a.b", "c": "x.a.c"}


async def test_a_bare_input_feeds_every_root():
    run = await build([("a", "c"), ("b", "c")]).run("x")
    assert run.outputs["c"].content == "x.a+x.b.c"


async def test_a_dict_keyed_by_root_ids_feeds_each_root_its_own_input():
    run = await build([("a", "c"), ("b", "c")]).run({"a": "1", "b": "2"})
    assert run.outputs["c"].content == "1.a+2.b.c"


async def test_a_dict_payload_carries_overrides_to_every_node():
    seen = []
    node = FunctionNode("b", fn=lambda r: seen.append(r) or "ok")
    orchestrator = build([("a", "b")], nodes=[node, FunctionNode("a", fn=lambda p: seen.append(p) or p.prompt)])
    await orchestrator.run({"prompt": "hi", "temperature": 0.0})
    assert (seen[0].prompt, seen[0].temperature) == ("hi", 0.0)


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ({"b": "x", "a": "y"}, ValueError, "'b' is not a root node; the roots are: a"),
        ({"prompt": "x", "temprature": 1}, ValueError, "invalid run input: temprature: Extra inputs"),
        (42, TypeError, "a run input is a str, a Payload or a mapping, not int"),
    ],
)
async def test_bad_inputs_are_rejected(inputs, error, match):
    with pytest.raises(error, match=match):
        await build([("a", "b")]).run(inputs)


async def test_every_root_needs_an_input_when_given_by_id():
    with pytest.raises(ValueError, match="no input for root node"):
        await build([("a", "c"), ("b", "c")]).run({"a": "x"})


async def test_a_join_receives_inputs_in_edge_order_whatever_order_they_finish():
    c_done = anyio.Event()

    async def slow_b(r):
        await c_done.wait()  # b finishes only after c
        return "B"

    def fast_c(r):
        c_done.set()
        return "C"

    nodes = [FunctionNode("b", fn=slow_b), FunctionNode("c", fn=fast_c), JoinNode("j", config={"separator": ","})]
    run = await build([("a", "b"), ("a", "c"), ("b", "j"), ("c", "j")], nodes=nodes).run("x")
    assert [r.node_id for r in run.trace].index("c") < [r.node_id for r in run.trace].index("b")
    assert run.outputs["j"].content == "B,C"


async def test_a_fan_out_runs_its_branches_concurrently():
    width, started, all_started = 50, [], anyio.Event()

    async def branch(r):
        started.append(r)
        if len(started) == width:
            all_started.set()
        await all_started.wait()  # deadlocks unless every branch runs at once
        return "ok"

    edges = [("root", f"b{i}") for i in range(width)]
    nodes = [FunctionNode(f"b{i}", fn=branch) for i in range(width)]
    with anyio.fail_after(5):
        run = await build(edges, nodes=nodes).run("x")
    assert len(run.outputs) == width


async def test_max_concurrency_bounds_running_nodes():
    running, peak = 0, 0

    async def branch(r):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        return "ok"

    nodes = [FunctionNode(f"b{i}", fn=branch) for i in range(8)]
    orchestrator = build([("root", f"b{i}") for i in range(8)], nodes=nodes, max_concurrency=2)
    await orchestrator.run("x")
    assert peak == 2


async def test_a_slow_branch_does_not_hold_back_a_fast_one():
    fast_done = anyio.Event()

    async def slow(r):
        await fast_done.wait()  # if the fast branch waited for this one, the run would deadlock
        return "slow"

    def last_fast(r):
        fast_done.set()
        return "fast"

    nodes = [FunctionNode("slow", fn=slow), FunctionNode("f3", fn=last_fast)]
    orchestrator = build([("a", "slow"), ("a", "f1"), ("f1", "f2"), ("f2", "f3")], nodes=nodes)
    with anyio.fail_after(5):
        run = await orchestrator.run("x")
    assert [r.node_id for r in run.trace] == ["a", "f1", "f2", "f3", "slow"]


async def test_a_router_sends_the_result_down_the_matching_route_only():
    router = RouterNode("r", config={"routes": {"num": {"regex": r"^\d+"}}, "default": "text"})
    orchestrator = build([("r", "digits", "num"), ("r", "words", "text"), ("r", "log")], nodes=[router])
    run = await orchestrator.run("42")
    assert set(run.outputs) == {"digits", "log"}
    assert run.skipped == ("words",)
    assert (await orchestrator.run("hello")).skipped == ("digits",)


async def test_a_condition_on_an_edge_filters_results():
    orchestrator = build([("a", "yes", {"contains": "keep"}), ("a", "no", {"not": {"contains": "keep"}})])
    run = await orchestrator.run("keep me")
    assert (set(run.outputs), run.skipped) == ({"yes"}, ("no",))


async def test_a_callable_condition_filters_results():
    run = await build([("a", "b", lambda r: r.content.startswith("z"))]).run("x")
    assert (run.outputs, run.skipped) == ({}, ("b",))


async def test_nodes_behind_an_untaken_edge_are_skipped_and_joins_use_what_arrived():
    edges = [("a", "b", {"contains": "never"}), ("b", "c"), ("a", "d"), ("c", "j"), ("d", "j")]
    run = await build(edges).run("x")
    assert run.skipped == ("b", "c")
    assert run.outputs["j"].content == "x.a.d.j"


async def test_a_node_whose_inputs_all_carried_nothing_is_skipped_with_its_successors():
    edges = [("a", "b", {"contains": "no"}), ("a", "c", {"contains": "no"}), ("b", "j"), ("c", "j"), ("j", "k")]
    run = await build(edges).run("x")
    assert run.skipped == ("b", "c", "j", "k")
    assert run.outputs == {}


async def test_a_failing_node_fails_only_its_own_branch():
    called = []
    nodes = [FunctionNode("bad", fn=raising("boom")), FunctionNode("after_bad", fn=lambda r: called.append(r) or "?")]
    run = await build([("a", "bad"), ("bad", "after_bad"), ("a", "good"), ("good", "after_good")], nodes=nodes).run("x")
    assert run.errors == {"bad": "RuntimeError: boom"}
    assert run.results["after_bad"].error == "upstream 'bad' failed: RuntimeError: boom"
    assert run.outputs["after_good"].content == "x.a.good.after_good"
    assert called == []


async def test_a_relayed_failure_names_where_it_began_however_far_downstream():
    run = await build([("a", "b"), ("b", "c"), ("c", "d")], nodes=[FunctionNode("b", fn=raising())]).run("x")
    assert run.outputs["d"].error == "upstream 'b' failed: RuntimeError: boom"
    assert list(run.errors) == ["b"]


async def test_a_node_accepting_errors_receives_the_failed_result():
    handler = FunctionNode("h", fn=lambda r: f"handled {r.error}", accepts_errors=True)
    run = await build([("a", "bad"), ("bad", "h")], nodes=[FunctionNode("bad", fn=raising()), handler]).run("x")
    assert run.outputs["h"].content == "handled RuntimeError: boom"


async def test_a_router_passing_a_failure_on_has_not_failed_itself():
    router = RouterNode("r", config={"routes": {"failed": {"field": "error", "is_null": False}}, "default": "ok"})
    fallback = FunctionNode("fallback", fn=lambda r: "sorry", accepts_errors=True)
    nodes = [FunctionNode("bad", fn=raising()), router, fallback]
    run = await build([("bad", "r"), ("r", "fallback", "failed"), ("r", "done", "ok")], nodes=nodes).run("x")
    assert run.errors == {"bad": "RuntimeError: boom"}
    assert (run.outputs["fallback"].content, run.skipped) == ("sorry", ("done",))


async def test_fail_fast_stops_the_run_and_cancels_running_nodes():
    started, cancelled = anyio.Event(), anyio.Event()

    async def slow(r):
        started.set()
        try:
            await anyio.sleep(10)
        finally:
            cancelled.set()

    async def bad(r):
        await started.wait()  # fail while `slow` is running, so that it has something to cancel
        raise RuntimeError("boom")

    nodes = [FunctionNode("bad", fn=bad), FunctionNode("slow", fn=slow)]
    orchestrator = build([("a", "bad"), ("a", "slow"), ("bad", "after")], nodes=nodes, fail_fast=True)
    with anyio.fail_after(5), pytest.raises(RunFailed, match="node 'bad' failed: RuntimeError: boom") as caught:
        await orchestrator.run("x")
    assert cancelled.is_set()
    assert caught.value.node_id == "bad"
    assert "after" not in caught.value.result.results


async def test_fail_fast_in_a_chain_stops_at_the_failure():
    orchestrator = build([("a", "bad"), ("bad", "c")], nodes=[FunctionNode("bad", fn=raising())])
    with pytest.raises(RunFailed) as caught:
        await orchestrator.run("x", fail_fast=True)
    assert list(caught.value.result.results) == ["a", "bad"]


@pytest.mark.parametrize("edges", [[("a", "stuck"), ("a", "b")], [("a", "b"), ("a", "stuck")]],
                         ids=["in-the-running-task", "in-a-spawned-task"])
async def test_a_node_past_its_timeout_fails_and_the_run_goes_on(edges):
    async def stuck(r):
        await anyio.sleep(10)

    nodes = [FunctionNode("stuck", fn=stuck, timeout=0.05)]
    with anyio.fail_after(5):
        run = await build(edges, nodes=nodes).run("x")
    assert run.errors == {"stuck": "timed out after 0.05 s"}
    assert run.outputs["b"].ok


async def test_the_orchestrator_timeout_applies_to_nodes_without_their_own():
    async def stuck(r):
        await anyio.sleep(10)

    with anyio.fail_after(5):
        run = await build([("a", "stuck")], nodes=[FunctionNode("stuck", fn=stuck)], node_timeout=0.05).run("x")
    assert run.errors == {"stuck": "timed out after 0.05 s"}


async def test_cancelling_a_run_cancels_its_running_nodes():
    started, cancelled = anyio.Event(), []

    async def slow(r):
        started.set()
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(r)
            raise

    orchestrator = build([("a", "s1"), ("a", "s2")], nodes=[FunctionNode("s1", fn=slow), FunctionNode("s2", fn=slow)])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(orchestrator.run, "x")
            await started.wait()
            await anyio.sleep(0)
            tg.cancel_scope.cancel()
    assert len(cancelled) == 2


async def test_totals_are_exact_sums_of_the_node_results():
    def priced(cost, tokens):
        def fn(arg):
            return ResultMessage(task_id="new", run_id="r", node_id="x", content="c", model_name="m",
                                 usage=Usage(input_tokens=tokens, output_tokens=1), cost=cost)
        return fn

    nodes = [FunctionNode("a", fn=priced(Decimal("0.1"), 10)), FunctionNode("b", fn=priced(Decimal("0.2"), 20)),
             FunctionNode("c", fn=priced(None, 5))]
    run = await build([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], nodes=nodes).run("x")
    assert run.total_cost == Decimal("0.3")
    assert (run.input_tokens, run.output_tokens, run.total_tokens) == (35, 3, 38)
    assert run.cost_by_node == {"a": Decimal("0.1"), "b": Decimal("0.2"), "c": Decimal(0), "d": Decimal(0)}
    assert run.unpriced == ("c",)


async def test_exactly_once_delivery_over_many_runs_with_random_failures():
    import random

    rng = random.Random(1234)
    deliveries: list[tuple[str, str, str]] = []  # (run, upstream task, receiving node)
    planned_cost: dict[str, Decimal] = {}

    def node(node_id):
        async def fn(arg):
            inputs = arg if isinstance(arg, list) else [] if not isinstance(arg, ResultMessage) else [arg]
            run_id = inputs[0].run_id if inputs else None
            for r in inputs:
                deliveries.append((r.run_id, r.task_id, node_id))
            if rng.random() < 0.3:
                await anyio.sleep(0)
            if rng.random() < 0.15:
                raise RuntimeError(f"{node_id} failed")
            cost = Decimal(rng.randrange(1, 1000)) / 10**6
            if run_id is not None:
                planned_cost[f"{run_id}:{node_id}"] = cost
            return ResultMessage(task_id="t", run_id="r", node_id=node_id, content=node_id, cost=cost)
        return FunctionNode(node_id, fn=fn, accepts_errors=node_id == "sink")

    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("c", "e", {"field": "error", "is_null": True}),
             ("d", "sink"), ("e", "sink")]
    orchestrator = build(edges, nodes=[node(n) for n in "abcde"] + [node("sink")])
    runs = await orchestrator.run_many(["x"] * 1000, concurrency=50)

    assert len(runs) == 1000 and len({r.run_id for r in runs}) == 1000
    for run in runs:
        ids = [r.task_id for r in run.trace]
        assert len(ids) == len(set(ids))  # no node ran twice
        assert set(run.results) | set(run.skipped) == set("abcde") | {"sink"}
        assert run.total_cost == sum((r.cost for r in run.trace), Decimal(0))
        assert set(run.errors) == {r.node_id for r in run.trace if r.error and not r.error.startswith("upstream")}
    # every result went once along every edge whose condition held, to a node that ran
    delivered = {}
    for run_id, task_id, dst in deliveries:
        delivered[(task_id, dst)] = delivered.get((task_id, dst), 0) + 1
    assert set(delivered.values()) == {1}
    expected = set()
    for run in runs:
        for src, dst, *when in edges:
            r = run.results.get(src)
            if r is None or dst not in run.results or (when and r.error is not None):
                continue
            if run.results[dst].error and run.results[dst].error.startswith("upstream"):
                continue  # relayed without calling the node
            if dst == "sink" or r.error is None:
                expected.add((r.task_id, dst))
    assert set(delivered) == expected


async def test_events_report_nodes_and_the_finished_run():
    orchestrator = build([("a", "b")])
    events = []
    unsubscribe = orchestrator.subscribe(events.append)
    run = await orchestrator.run("x")
    unsubscribe()
    assert [(e.kind, e.node_id) for e in events] == [
        ("node_started", "a"), ("node_finished", "a"), ("node_started", "b"), ("node_finished", "b"),
        ("run_finished", None),
    ]
    assert events[1].result is run.results["a"]
    assert events[-1].run is run
    await orchestrator.run("x")
    assert len(events) == 5


async def test_the_event_stream_yields_the_same_events():
    orchestrator = build([("a", "b")])
    async with orchestrator.events() as stream:
        await orchestrator.run("x")
        kinds = [stream.receive_nowait().kind for _ in range(5)]
    assert kinds == ["node_started", "node_finished", "node_started", "node_finished", "run_finished"]


async def test_run_many_returns_results_in_input_order():
    finished = []

    async def echo(payload):
        await anyio.sleep(0.001 * (5 - int(payload.prompt)))  # later inputs finish first
        return payload.prompt

    orchestrator = build([("a", "b")], nodes=[FunctionNode("a", fn=echo)])
    runs = await orchestrator.run_many([str(i) for i in range(5)], concurrency=5,
                                       on_result=lambda i, r: finished.append(i))
    assert [r.outputs["b"].content for r in runs] == ["0.b", "1.b", "2.b", "3.b", "4.b"]
    assert sorted(finished) == [0, 1, 2, 3, 4]


async def test_run_many_attaches_metadata_per_run():
    runs = await build([("a", "b")]).run_many(["x", "y"], metadata=[{"id": 1}, {"id": 2}])
    assert [r.metadata for r in runs] == [{"id": 1}, {"id": 2}]


async def test_concurrent_runs_on_one_orchestrator_stay_separate():
    orchestrator = build([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    results = {}

    async def one(i):
        results[i] = await orchestrator.run(str(i))

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(one, i)
    assert all(results[i].outputs["d"].content == f"{i}.a.b+{i}.a.c.d" for i in range(100))


async def test_a_loop_runs_until_its_exit_condition_holds():
    def count(arg):
        return str(int(text_of(arg)) + 1)

    head = FunctionNode("inc", fn=count, max_iterations=10)
    router = RouterNode("check", config={"routes": {"done": {"equals": "3"}}, "default": "again"})
    orchestrator = build([("inc", "check"), ("check", "inc", "again"), ("check", "out", "done")], nodes=[head, router])
    run = await orchestrator.run("0")
    assert run.outputs["out"].content == "3.out"
    assert [r.task_id.split(":")[1] for r in run.trace if r.node_id == "inc"] == ["inc", "inc#1", "inc#2"]
    assert run.ok


async def test_a_loop_that_never_exits_stops_at_max_iterations():
    head = FunctionNode("a", fn=lambda arg: "again", max_iterations=3)
    run = await build([("a", "b"), ("b", "a")], nodes=[head]).run("x")
    assert run.errors == {"a": "stopped after max_iterations=3: the loop did not exit"}
    assert [r.node_id for r in run.trace] == ["a", "b"] * 3


async def test_a_node_a_loop_runs_again_adds_up_its_cost():
    def priced(arg):
        return ResultMessage(task_id="new", run_id="r", node_id="x", content="again", model_name="m",
                             usage=Usage(input_tokens=2, output_tokens=1), cost=Decimal("0.25"))

    run = await build([("a", "b"), ("b", "a")], nodes=[FunctionNode("a", fn=priced, max_iterations=3)]).run("x")
    assert run.cost_by_node == {"a": Decimal("0.75"), "b": Decimal(0)}
    assert (run.total_cost, run.total_tokens) == (Decimal("0.75"), 9)


async def test_a_join_inside_a_loop_waits_for_both_branches_on_every_lap():
    head = FunctionNode("h", fn=lambda arg: "go", max_iterations=3)
    join = JoinNode("j", config={"separator": ","})
    run = await build([("h", "l"), ("h", "r"), ("l", "j"), ("r", "j"), ("j", "h")], nodes=[head, join]).run("x")
    assert [r.content for r in run.trace if r.node_id == "j"] == ["go.l,go.r"] * 3


async def test_nodes_are_initialized_once_and_closed():
    class Tracked(Node):
        type_name = "tracked"
        inits = closes = 0

        async def initialize(self):
            Tracked.inits += 1

        async def aclose(self):
            Tracked.closes += 1

        async def handle(self, task):
            return task.reply("ok")

    orchestrator = build([("t", "b")], nodes=[Tracked("t")])
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(orchestrator.run, "x")
    await orchestrator.aclose()
    assert (Tracked.inits, Tracked.closes) == (1, 1)


async def test_a_node_registered_after_initialize_is_initialized():
    class Tracked(Node):
        ready = False

        async def initialize(self):
            self.ready = True

    orchestrator = GraphOrchestrator()
    await orchestrator.initialize()
    node = await orchestrator.register_node(Tracked("t"))
    assert node.ready


async def test_a_node_returning_something_else_fails_cleanly():
    class Wrong(Node):
        async def handle(self, task):
            return "text"

    run = await build([("w", "b")], nodes=[Wrong("w")]).run("x")
    assert run.errors == {"w": "handle() returned str, not a ResultMessage"}


async def test_a_misaddressed_result_is_readdressed_to_its_task():
    class Sloppy(Node):
        async def handle(self, task):
            return ResultMessage(task_id="?", run_id="?", node_id="?", content="c")

    run = await build([("s", "b")], nodes=[Sloppy("s")]).run("x")
    assert (run.results["s"].node_id, run.results["s"].run_id) == ("s", run.run_id)


async def test_node_stats_count_calls_and_errors():
    orchestrator = build([("a", "bad")], nodes=[FunctionNode("bad", fn=raising())])
    await orchestrator.run("x")
    await orchestrator.run("y")
    stats = orchestrator.get_stats()
    assert (stats["a"]["calls"], stats["bad"]["calls"], stats["bad"]["errors"]) == (2, 2, 2)


async def test_an_empty_graph_cannot_run():
    with pytest.raises(ValueError, match="the graph has no nodes"):
        await GraphOrchestrator().run("x")


def test_mermaid_shows_nodes_edges_and_routes():
    router = RouterNode("r", config={"routes": {"yes": {"equals": "y"}}})
    orchestrator = build([("a", "r"), ("r", "b", "yes"), ("a", "c", {"contains": "z"})], nodes=[router])
    assert orchestrator.to_mermaid() == "\n".join([
        "---", "title: graph", "---", "flowchart TD",
        '    r{"r<br/><small>router</small>"}',
        '    a["a<br/><small>function</small>"]',
        '    b["b<br/><small>function</small>"]',
        '    c["c<br/><small>function</small>"]',
        "    a --> r",
        '    r -- "yes" --> b',
        '    a -- "contains: z" --> c',
    ]) + "\n"


async def test_an_exception_in_a_condition_surfaces_as_itself():
    def broken(result):
        raise KeyError("oops")

    with pytest.raises(KeyError, match="oops"):
        await build([("a", "b", broken), ("a", "c")]).run("x")


async def test_run_many_rejects_a_bad_input_before_running_any():
    calls = []
    orchestrator = build([("a", "b")], nodes=[FunctionNode("a", fn=lambda p: calls.append(p) or "x")])
    with pytest.raises(ValueError, match="invalid run input"):
        await orchestrator.run_many(["ok", {"prompt": "x", "bogus": 1}])
    assert calls == []


async def test_a_run_result_equals_one_validated_from_its_own_fields():
    run = await build([("a", "b"), ("a", "c")]).run("x")
    validated = RunResult.model_validate(dict(run))
    assert validated == run
    assert run.model_fields_set == set(RunResult.model_fields)
    assert run.model_dump() == validated.model_dump()
