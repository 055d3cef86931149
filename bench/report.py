"""Turns the benchmarks' JSON answers into the comparison table, the target verdicts and the
markdown report. Pure functions of the records: no measuring happens here.

A ratio says how many times better ours is than the peer from the same run: peer ÷ ours for
times, sizes and overheads, ours ÷ peer for throughputs. Above 1, ours is better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_CONTRACT = "contract floor: the same sleeps + the pydantic messages"

Metric = dict[str, Any]
Records = list[dict[str, Any]]

UNITS = {"us": "µs", "tok/s": "tok/s", "req/s": "req/s"}


@dataclass(frozen=True)
class Row:
    section: str
    measure: str
    ours: Metric | None
    peer_name: str
    peer: Metric | None
    higher_is_better: bool = False
    tail: str = "p95"  # the percentile shown next to the median

    @property
    def ratio(self) -> float | None:
        return ratio(self.ours, self.peer, self.higher_is_better)


@dataclass(frozen=True)
class Target:
    name: str
    measured: float | None
    unit: str
    limit: float
    at_most: bool  # the measured value must be <= limit (else >=)

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "n/a"
        ok = self.measured <= self.limit if self.at_most else self.measured >= self.limit
        return "pass" if ok else "FAIL"


def ratio(ours: Metric | None, peer: Metric | None, higher_is_better: bool = False) -> float | None:
    if ours is None or peer is None or ours["median"] <= 0 or peer["median"] <= 0:
        return None  # missing, or an overhead lost in the noise: no meaningful factor
    return ours["median"] / peer["median"] if higher_is_better else peer["median"] / ours["median"]


class Results:
    """The records of one suite run, looked up by benchmark, side and shape."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self._by_key = {(r["benchmark"], r.get("shape", ""), r.get("side", "")): r for r in records}

    def get(self, benchmark: str, side: str, name: str, shape: str = "") -> Metric | None:
        record = self._by_key.get((benchmark, shape, side))
        return None if record is None else record.get("metrics", {}).get(name)

    def params(self, benchmark: str, side: str, shape: str = "") -> dict[str, Any]:
        record = self._by_key.get((benchmark, shape, side))
        return {} if record is None else record.get("params", {})

    def skipped(self) -> list[tuple[str, str]]:
        return [(r["benchmark"], r["skipped"]) for r in self.records if "skipped" in r]

    def errors(self) -> list[tuple[str, str]]:
        return [(r["benchmark"], r["error"]) for r in self.records if "error" in r]


def faster(*metrics: Metric | None) -> Metric | None:
    present = [m for m in metrics if m is not None]
    return min(present, key=lambda m: m["median"]) if present else None


CONCURRENCY_PEERS = (
    ("raw_fast", "raw OpenAI SDK on DefaultAioHttpClient"),
    ("raw_default", "raw OpenAI SDK on its default client (httpx2)"),
    ("raw_post", "raw SDK's post() on DefaultAioHttpClient (the call ours makes)"),
    ("litellm", "LiteLLM Router"),
    ("floor", "floor: bare aiohttp POST loop"),
)


def rows(r: Results) -> list[Row]:
    ours_rt, lite_rt = ("routing", "ours"), ("routing", "litellm")
    out = [
        Row("1. Routing", "raw OpenAI SDK call, in each side's process (baseline; ours: openai 3 on our transport)",
            r.get(*ours_rt, "raw_sdk"), "raw SDK (LiteLLM's process: openai 2, httpx)", r.get(*lite_rt, "raw_sdk")),
        Row("1. Routing", "call through the router, HTTP, 2-model fallback list",
            r.get(*ours_rt, "http"), "LiteLLM Router", r.get(*lite_rt, "http")),
        Row("1. Routing", "routing overhead over the raw SDK, HTTP",
            r.get(*ours_rt, "http_overhead"), "LiteLLM Router", r.get(*lite_rt, "http_overhead")),
        Row("1. Routing", "raw SDK's post() with the JSON create() sends: the call our provider makes",
            r.get(*ours_rt, "raw_post"), "raw SDK's create() (the baseline above)", r.get(*ours_rt, "raw_sdk")),
        Row("1. Routing", "routing overhead over that post(): what is ours alone, HTTP",
            r.get(*ours_rt, "post_overhead"), "LiteLLM Router over its raw SDK", r.get(*lite_rt, "http_overhead")),
        Row("1. Routing", "client CPU per call beyond that post()'s, HTTP",
            r.get(*ours_rt, "post_cpu_overhead"), "LiteLLM Router beyond its raw SDK's",
            r.get(*lite_rt, "http_cpu_overhead")),
        Row("1. Routing", "client CPU per call through the router, HTTP",
            r.get(*ours_rt, "http_cpu"), "LiteLLM Router", r.get(*lite_rt, "http_cpu")),
        Row("1. Routing", "client CPU per call beyond the raw SDK's, HTTP",
            r.get(*ours_rt, "http_cpu_overhead"), "LiteLLM Router", r.get(*lite_rt, "http_cpu_overhead")),
        Row("1. Routing", "in-process call (ours: a callable model; LiteLLM: mock_response)",
            r.get(*ours_rt, "in_process"), "LiteLLM Router", r.get(*lite_rt, "in_process")),
        Row("1. Routing", "in-process routing overhead (beyond the callable itself)",
            r.get(*ours_rt, "in_process_overhead"), "LiteLLM Router", r.get(*lite_rt, "in_process_overhead")),
        Row("1. Routing", "the same in-process call run just before each raw SDK call: what it adds to the HTTP cycle",
            r.get(*ours_rt, "in_process_inside_http"), "that call alone (above)", r.get(*ours_rt, "in_process")),
        Row("2. Fallback", "first model refuses connections: time to the second's answer",
            r.get(*ours_rt, "fallback"), "LiteLLM Router", r.get(*lite_rt, "fallback")),
        Row("2. Fallback", "fallback overhead over a hand-written try/except of 2 SDK calls",
            r.get(*ours_rt, "fallback_overhead"), "LiteLLM Router", r.get(*lite_rt, "fallback_overhead")),
        Row("3. Import", "import amaos_llm vs import litellm (fresh process)",
            r.get("imports", "ours", "import"), "litellm", r.get("imports", "litellm", "import")),
        Row("3. Import", "import graphs vs import langgraph.graph (fresh process)",
            r.get("imports", "ours_graphs", "import"), "langgraph", r.get("imports", "langgraph", "import")),
    ]
    step = r.get("graph", "ours", "node_step", "chain")
    out += [
        Row("4. Graph", "10-node no-op chain: time per node step", step,
            "LangGraph (async nodes, ainvoke)", r.get("graph", "langgraph", "node_step", "chain")),
        Row("4. Graph", "10-node no-op chain: time per node step", step,
            "LangGraph (sync nodes, invoke)", r.get("graph", "langgraph_sync", "node_step", "chain")),
        Row("4. Graph", "fan-out: 100 branches of 10 ms sleeps, then a join (per run)",
            r.get("graph", "ours", "run", "fanout"), "LangGraph", r.get("graph", "langgraph", "run", "fanout")),
        Row("4. Graph", "fan-out: 100 branches of 10 ms sleeps, then a join (per run)",
            r.get("graph", "ours", "run", "fanout"), "floor: plain asyncio.gather of the sleeps",
            r.get("graph", "asyncio", "run", "fanout")),
        Row("4. Graph", "1,000 concurrent 3-step runs of 10 ms sleeps: wall time",
            r.get("graph", "ours", "wall", "concurrent"), "LangGraph",
            r.get("graph", "langgraph", "wall", "concurrent")),
        Row("4. Graph", "1,000 concurrent 3-step runs of 10 ms sleeps: wall time",
            r.get("graph", "ours", "wall", "concurrent"), "floor: plain asyncio.gather of the sleeps",
            r.get("graph", "asyncio", "wall", "concurrent")),
        Row("4. Graph", "1,000 concurrent 3-step runs of 10 ms sleeps: wall time",
            r.get("graph", "ours", "wall", "concurrent"), _CONTRACT,
            r.get("graph", "contract", "wall", "concurrent")),
        Row("4. Graph", "1,000 concurrent 3-step runs: peak RSS delta",
            r.get("graph", "ours", "rss_delta", "concurrent"), "LangGraph",
            r.get("graph", "langgraph", "rss_delta", "concurrent")),
        Row("4. Graph", "1,000 concurrent 3-step runs: peak RSS delta",
            r.get("graph", "ours", "rss_delta", "concurrent"), "floor: plain asyncio.gather of the sleeps",
            r.get("graph", "asyncio", "rss_delta", "concurrent")),
        Row("4. Graph", "1,000 concurrent 3-step runs: peak RSS delta",
            r.get("graph", "ours", "rss_delta", "concurrent"), _CONTRACT,
            r.get("graph", "contract", "rss_delta", "concurrent")),
    ]
    for shape in ("c500", "c2000"):
        load = r.params("concurrency", "ours", shape)
        title = f"{load.get('total', 0):,} requests at concurrency {load.get('concurrency', 0)}"
        for measure, name, higher, tail in (("throughput", f"{title}: throughput", True, "p95"),
                                            ("latency", f"{title}: per-request latency", False, "p99"),
                                            ("cpu_per_request", f"{title}: client CPU per request", False, "p95"),
                                            ("rss_delta", f"{title}: peak RSS delta", False, "p95")):
            ours = r.get("concurrency", "ours", measure, shape)
            out += [Row("5. Concurrency", name, ours, peer_name, r.get("concurrency", peer, measure, shape),
                        higher_is_better=higher, tail=tail) for peer, peer_name in CONCURRENCY_PEERS]
    out += [
        Row("6. Embedded", "SmolLM2-135M generation: tokens per second",
            r.get("embedded", "ours", "tokens_per_s"), "raw xllamacpp", r.get("embedded", "raw", "tokens_per_s"),
            higher_is_better=True),
        Row("6. Embedded", "model load (first call, 1 token), once per process",
            r.get("embedded", "ours", "load"), "raw xllamacpp", r.get("embedded", "raw", "load")),
    ]
    return out + cost_rows(r) + streaming_rows(r) + batch_rows(r)


def cost_rows(r: Results) -> list[Row]:
    ours_cost, ours_ok = r.get("cost", "ours", "cost"), r.get("cost", "ours", "success_rate")
    section = "7. Cost"
    return [
        Row(section, "workload cost (the fakes' ledgers): ours, local first, strategy: cost",
            ours_cost, "always-best-cloud", r.get("cost", "best_cloud", "cost")),
        Row(section, "workload cost", ours_cost, "always-cheapest-cloud", r.get("cost", "cheapest_cloud", "cost")),
        Row(section, "workload cost", ours_cost, "LiteLLM cost-based-routing", r.get("cost", "litellm", "cost")),
        Row(section, "workload cost", ours_cost, "LiteLLM, local priced 1e-12",
            r.get("cost", "litellm_local_eps", "cost")),
        Row(section, "success rate", ours_ok, "always-best-cloud", r.get("cost", "best_cloud", "success_rate"), True),
        Row(section, "success rate", ours_ok, "LiteLLM cost-based-routing", r.get("cost", "litellm", "success_rate"),
            True),
        Row(section, "under a budget of 25 % of ours' spend: cost", r.get("cost", "ours_budget", "cost"),
            "the budget", r.get("cost", "ours_budget", "budget")),
        Row(section, "under a budget of 25 % of ours' spend: success rate",
            r.get("cost", "ours_budget", "success_rate"), "", None, True),
    ]


def cost_targets(r: Results) -> list[Target]:
    def get(side: str, name: str) -> float | None:
        return _median(r.get("cost", side, name))

    ours, best, lite = get("ours", "cost"), get("best_cloud", "cost"), get("litellm", "cost")
    ours_ok, best_ok, lite_ok = get("ours", "success_rate"), get("best_cloud", "success_rate"), \
        get("litellm", "success_rate")
    return [
        Target("cost saved against always-best-cloud", None if ours is None or not best else 100 * (1 - ours / best),
               "%", 60, False),
        Target("success rate, ours − always-best-cloud",
               None if ours_ok is None or best_ok is None else ours_ok - best_ok, "pp", 0, False),
        Target("cost, ours ÷ LiteLLM cost-based-routing", None if ours is None or not lite else ours / lite, "×", 1,
               True),
        Target("success rate, ours − LiteLLM", None if ours_ok is None or lite_ok is None else ours_ok - lite_ok,
               "pp", 0, False),
        Target("overspend under a budget", get("ours_budget", "overspend"), "USD", 0, True),
    ]


def batch_rows(r: Results) -> list[Row]:
    n = r.params("batch", "ours").get("requests", 0)
    return [
        Row("9. Batch and budgets", f"`run_batch` of {n:,} instant callable requests at concurrency 256: s",
            r.get("batch", "ours", "batch"), "`asyncio.Semaphore(256)` + `gather`, same chat() calls",
            r.get("batch", "gather", "batch")),
        Row("9. Batch and budgets", "price lookup + cost of a usage, after the first (genai-prices, cached tokens)",
            r.get("batch", "ours", "price_lookup"), "", None),
        Row("9. Batch and budgets", "budget reserve + settle, local store, per call",
            r.get("batch", "ours", "reserve_settle"), "", None),
    ]


def batch_targets(r: Results) -> list[Target]:
    ours, floor = r.get("batch", "ours", "batch"), r.get("batch", "gather", "batch")
    return [
        Target("batch of instant requests, ours ÷ Semaphore + gather (wall time)",
               None if ours is None or floor is None else ours["median"] / floor["median"], "×", 2, True),
        Target("price lookup after the first (median)", _median(r.get("batch", "ours", "price_lookup")), "µs", 5, True),
        Target("budget reserve + settle (median)", _median(r.get("batch", "ours", "reserve_settle")), "µs", 3, True),
    ]


def streaming_rows(r: Results) -> list[Row]:
    lib = r.params("streaming", "library")
    small, big = r.params("streaming", "cli").get("inputs", [0, 0])
    cli = "`amaos-llm run --output`, openai_compatible on the loopback server"

    def get(side: str, name: str) -> Metric | None:
        return r.get("streaming", side, name)

    return [
        Row("8. Streaming", f"iter_runs over {lib.get('inputs', 0):,} inputs, 3 nodes, in-process model: runs/s",
            get("library", "throughput"), "floor: the same runs one at a time (`await run()`)",
            get("library", "floor_throughput"), higher_is_better=True),
        Row("8. Streaming", "iter_runs: peak RSS delta over the whole stream", get("library", "rss_delta"), "", None),
        Row("8. Streaming", f"{cli}, {small:,} inputs: runs/s", get("cli", "throughput_small"), "", None,
            higher_is_better=True),
        Row("8. Streaming", f"{cli}, {big:,} inputs: runs/s", get("cli", "throughput_big"), "", None,
            higher_is_better=True),
        Row("8. Streaming", f"{cli}: peak RSS at {big:,} inputs, against {small:,}", get("cli", "rss_big"),
            f"{small:,} inputs", get("cli", "rss_small")),
    ]


def streaming_targets(r: Results) -> list[Target]:
    small, big = r.params("streaming", "cli").get("inputs", [0, 0])
    lib = r.params("streaming", "library").get("inputs", 0)
    rss_small, rss_big = r.get("streaming", "cli", "rss_small"), r.get("streaming", "cli", "rss_big")
    return [
        Target(f"iter_runs over {lib:,} inputs, in-process model", _median(r.get("streaming", "library", "throughput")),
               "runs/s", 10_000, False),
        # Flat memory: ten times the inputs may cost 10 % more peak RSS, plus 10 MB of slack for the allocator.
        Target(f"CLI --output peak RSS at {big:,} inputs (limit: {small:,} inputs' × 1.1 + 10 MB)",
               _median(rss_big), "MB", 0.0 if rss_small is None else rss_small["median"] * 1.1 + 10, True),
        # On the big run: at the small size of a quick run (2,000 inputs) the start-up weighs as much as the runs.
        Target(f"CLI --output runs/s at {big:,} inputs (before streaming: 511)",
               _median(r.get("streaming", "cli", "throughput_big")), "runs/s", 511, False),
    ]


def _median(m: Metric | None) -> float | None:
    return None if m is None else m["median"]


def targets(r: Results) -> list[Target]:
    overhead = r.get("routing", "ours", "in_process_overhead")
    step = r.get("graph", "ours", "node_step", "chain")
    lg_step = faster(r.get("graph", "langgraph", "node_step", "chain"),
                     r.get("graph", "langgraph_sync", "node_step", "chain"))
    return [
        Target("routing overhead, in-process callable (median)", _median(overhead), "µs", 30, True),
        Target("LiteLLM's overhead (Router − raw SDK, HTTP) ÷ ours (in-process)",
               ratio(overhead, r.get("routing", "litellm", "http_overhead")), "×", 20, False),
        Target("like for like, no HTTP: LiteLLM mock_response ÷ ours (in-process)",
               ratio(overhead, r.get("routing", "litellm", "in_process_overhead")), "×", 20, False),
        Target("import amaos_llm (median)", _median(r.get("imports", "ours", "import")), "s", 0.3, True),
        Target("graph node step (median)", _median(step), "µs", 15, True),
        Target("LangGraph's node step (its faster mode) ÷ ours", ratio(step, lg_step), "×", 12, False),
        Target("fan-out of 100 × 10 ms (median per run)", _median(r.get("graph", "ours", "run", "fanout")),
               "ms", 13, True),
        Target("1,000 concurrent 3-step runs: wall time",
               _median(r.get("graph", "ours", "wall", "concurrent")), "s", 0.06, True),
        Target("1,000 concurrent 3-step runs: peak RSS delta",
               _median(r.get("graph", "ours", "rss_delta", "concurrent")), "MB", 5, True),
        Target("HTTP overhead over the raw SDK on the same transport (median)",
               _median(r.get("routing", "ours", "http_overhead")), "µs", 40, True),
        *concurrency_targets(r),
        Target("embedded tokens/s, ours ÷ raw xllamacpp",
               _percent(r.get("embedded", "ours", "tokens_per_s"), r.get("embedded", "raw", "tokens_per_s")),
               "%", 90, False),
        *cost_targets(r),
        *streaming_targets(r),
        *batch_targets(r),
    ]


def concurrency_targets(r: Results) -> list[Target]:
    out = []
    for shape, level in (("c500", "500"), ("c2000", "2,000")):
        def get(side: str, name: str) -> Metric | None:
            return r.get("concurrency", side, name, shape)

        ours_tput, latency = get("ours", "throughput"), get("ours", "latency")
        out.append(Target(f"concurrency {level}: ours ÷ raw SDK on its fastest transport (req/s)",
                          ratio(ours_tput, get("raw_fast", "throughput"), True), "×", 0.85, False))
        out.append(Target(f"concurrency {level}: p99 ÷ p50 of ours",
                          None if latency is None else latency["p99"] / latency["median"], "×", 3, True))
        if shape == "c500":
            out.append(Target(f"concurrency {level}: ours ÷ LiteLLM (req/s)",
                              ratio(ours_tput, get("litellm", "throughput"), True), "×", 4, False))
            raw_rss, ours_rss = get("raw_fast", "rss_delta"), get("ours", "rss_delta")
            out.append(Target(f"concurrency {level}: RSS delta, ours ÷ raw SDK on its fastest transport",
                              None if raw_rss is None or ours_rss is None or raw_rss["median"] <= 0
                              else ours_rss["median"] / raw_rss["median"], "×", 2, True))
    return out


def _percent(ours: Metric | None, base: Metric | None) -> float | None:
    if ours is None or base is None or base["median"] <= 0:
        return None
    return 100 * ours["median"] / base["median"]


# -- formatting ---------------------------------------------------------------------------------

def number(v: float) -> str:
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if a >= 0.1 or a == 0 else f"{v:.3f}"


def cell(m: Metric | None, tail: str = "p95") -> str:
    """`median unit (p95 x; lo–hi)`: the median, a tail percentile, the noise."""
    if m is None:
        return "—"
    unit = UNITS.get(m["unit"], m["unit"])
    extra = []
    if tail in m:
        extra.append(f"{tail} {number(m[tail])}")
    lo, hi = m["noise"]
    if lo != hi:
        extra.append(f"{number(lo)}–{number(hi)}")
    return f"**{number(m['median'])}** {unit}" + (f" ({'; '.join(extra)})" if extra else "")


def ratio_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}×" if value < 100 else f"{value:,.0f}×"


def markdown(r: Results, machine: dict[str, Any], header: dict[str, Any]) -> str:
    lines = [
        f"# amaos-llm benchmarks ({header['mode']})",
        "",
        f"Run {header['started']} with `{header['command']}` in {header['duration_s']:.0f} s. "
        "Every peer was measured in the same run, on the same machine, against the same loopback server.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {machine.get('cpu')} ({machine.get('cores')} cores) |",
        f"| memory | {machine.get('memory_gb')} GB |",
        f"| OS, Python | {machine.get('os')}, Python {machine.get('python')} |",
        f"| load average at start / end | {header['load_start']} / {header['load_end']} |",
        f"| amaos-llm commit | {machine.get('commit')} |",
        "| versions (bench/.venv: LiteLLM, LangGraph) | "
        + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v) + " |",
        "| versions (.venv: our side of the HTTP benchmarks) | "
        + ", ".join(f"{k} {v}" for k, v in machine.get("project_versions", {}).items() if v) + " |",
        "",
        "## Targets",
        "",
        "| target | measured | limit | result |",
        "|---|---|---|---|",
    ]
    for t in targets(r):
        measured = "—" if t.measured is None else f"{number(t.measured)} {t.unit}"
        bound = "≤" if t.at_most else "≥"
        lines.append(f"| {t.name} | {measured} | {bound} {number(t.limit)} {t.unit} | {t.verdict} |")
    lines += [
        "",
        "## Results",
        "",
        "Each cell: **median** (p95, or p99 for concurrency latency; noise: the lowest–highest median of the"
        " repeats, or of the samples when each sample is a whole run). Ratio: how many times better ours is"
        " (peer ÷ ours; ours ÷ peer for throughputs); n/a when our figure is within the noise of zero or below it.",
        "",
        "| benchmark | measure | amaos-llm | peer | peer's figure | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows(r):
        lines.append(f"| {row.section} | {row.measure} | {cell(row.ours, row.tail)} | {row.peer_name} "
                     f"| {cell(row.peer, row.tail)} "
                     f"| {ratio_cell(row.ratio)} |")
    for name, reason in r.skipped():
        lines.append(f"| {name} | skipped: {reason} | | | | |")
    if errors := r.errors():
        lines += ["", "## Errors", ""] + [f"- `{name}`: {text}" for name, text in errors]
    lines += ["", "How each figure is taken: `bench/README.md`.", ""]
    return "\n".join(lines)


def summary(r: Results) -> dict[str, Any]:
    """The derived part of latest.json: the table's rows and the target verdicts."""
    return {
        "rows": [{"section": x.section, "measure": x.measure, "ours": x.ours, "peer": x.peer_name,
                  "peer_figure": x.peer, "ratio": x.ratio} for x in rows(r)],
        "targets": [{"name": t.name, "measured": t.measured, "unit": t.unit, "limit": t.limit,
                     "at_most": t.at_most, "verdict": t.verdict} for t in targets(r)],
    }
