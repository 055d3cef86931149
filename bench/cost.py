"""Benchmark 7: cost efficiency. The same seeded workload through five sides, priced by the fakes.

Workload (`bench.cost_workload`): 2,000 requests (400 with `--quick`), 70 % short (50–800 tokens),
30 % long (4k–60k); a local model with an 8k window, up for 60 % of the requests; OpenAI-protocol
cloud fakes priced as gpt-4o, gpt-4o-mini, claude-3-5-haiku, claude-sonnet-4 and gemini-2.0-flash,
each failing 2–8 % of its attempts (500, 429 or a timeout), drawn per (request, model, attempt).
The server (`bench.cost_server`, its own process) bills every answer into a ledger per side, so
every side's cost is counted the same way, by the fakes.

Sides, one run:
- `ours`: the manager, local first, `routing.strategy: cost` (cheapest first), fallback on faults,
  context windows from the YAML;
- `ours_budget`: the same with `budget_usd` = 25 % of what `ours` spent: it must not overspend;
- `cheapest_cloud`, `best_cloud`: every request to gemini-2.0-flash / claude-sonnet-4 through
  the raw OpenAI SDK (its own 2 retries);
- `litellm`: a LiteLLM Router, `routing_strategy="cost-based-routing"`, the same six deployments
  with their prices and windows (`enable_pre_call_checks`), `num_retries=2` and fallbacks from
  the cheap group to the dear one; in bench/.venv (it pins openai<3).

Reported per side: cost, success rate, overspend (budgeted side), wall time. Targets: ours ≥ 60 %
cheaper than best_cloud at no lower success rate; ours' cost ≤ LiteLLM's at success ≥ LiteLLM's;
$0 overspend.

    python -m bench.cost [--quick]                       # the runner: server + both venvs
    python -m bench.cost --side ours --url URL --quick   # one process's sides (how the runner calls it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench import venv
from bench.cost_workload import BEST_CLOUD, CHEAPEST_CLOUD, LOCAL, MAX_TOKENS, MODELS, Request, workload
from bench.timing import emit

SEED = 20260413
CONCURRENCY = 32
TIMEOUT_S = 2.0  # per attempt, on every side; a timeout fault holds its reply far longer
KEY = "sk-bench"


# -- one process's sides ----------------------------------------------------------------------

async def run_side(requests: list[Request], call: Callable[[Request], Awaitable[Any]]) -> dict[str, Any]:
    """Send every request at CONCURRENCY; how many answered and how long it took."""
    gate = asyncio.Semaphore(CONCURRENCY)
    answered = 0
    errors: dict[str, int] = {}

    async def one(request: Request) -> None:
        nonlocal answered
        async with gate:
            try:
                await call(request)
            except Exception as exc:  # noqa: BLE001 - a failed request is a data point: counted by kind
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
            else:
                answered += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    return {"answered": answered, "requests": len(requests), "errors": errors, "wall_s": time.perf_counter() - start}


def ledger(url: str, side: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/{side}/ledger", timeout=10) as reply:  # noqa: S310 - loopback only
        return json.loads(reply.read())  # type: ignore[no-any-return]


def our_manager(base_url: str, budget_usd: Decimal | None = None) -> Any:
    from amaos_llm import LLMConfig, LLMManager

    models = []
    for name, info in MODELS.items():
        price_in, price_out = info["price"]  # type: ignore[misc]
        models.append({
            "name": name, "provider": "openai", "model": name, "base_url": base_url, "api_key": KEY,
            "source": "local" if name == LOCAL else "cloud", "context_window": info["window"],
            "cost_per_1k_input": Decimal(str(price_in)) / 1000, "cost_per_1k_output": Decimal(str(price_out)) / 1000,
            # A local server that is down says so at once: a retry gains nothing, and would count three
            # failures per request, so that two such requests in a row open its breaker for 30 s.
            **({"max_retries": 0} if name == LOCAL else {}),
        })
    config = LLMConfig.model_validate({
        "routing": {"strategy": "cost", "prefer_local": True},
        # A down local server answers at once; two quick retries on a cloud fault, then the next model.
        "defaults": {"max_tokens": MAX_TOKENS, "timeout": TIMEOUT_S, "max_retries": 2, "retry_backoff": 0.05,
                     "max_retry_wait": 0.5, "retry_jitter": 0},
        "models": models,
    })
    return LLMManager(config, budget_usd=budget_usd)


async def measure_ours(url: str, requests: list[Request]) -> list[dict[str, Any]]:
    """ours, then ours under 25 % of its spend, then the two single-model baselines (raw SDK)."""
    import openai

    out = []
    manager = our_manager(f"{url}/ours/v1")
    async with manager:
        stats = await run_side(requests, lambda r: manager.complete(r.prompt))
    spent = Decimal(ledger(url, "ours")["cost"])
    out.append({"side": "ours", **stats, "ledger": ledger(url, "ours")})
    budget = (spent / 4).quantize(Decimal("1E-6"))
    budgeted = our_manager(f"{url}/ours_budget/v1", budget)
    async with budgeted:
        stats = await run_side(requests, lambda r: budgeted.complete(r.prompt))
    out.append({"side": "ours_budget", **stats, "ledger": ledger(url, "ours_budget"), "budget_usd": str(budget),
                "manager_spent": str(budgeted.get_stats()["budget"]["spent"])})
    for side, model in (("cheapest_cloud", CHEAPEST_CLOUD), ("best_cloud", BEST_CLOUD)):
        client = openai.AsyncOpenAI(base_url=f"{url}/{side}/v1", api_key=KEY, timeout=TIMEOUT_S, max_retries=2)

        def call(r: Request, client: Any = client, model: str = model) -> Awaitable[Any]:
            return client.chat.completions.create(model=model, messages=[{"role": "user", "content": r.prompt}],
                                                  max_tokens=MAX_TOKENS)

        stats = await run_side(requests, call)
        await client.close()
        out.append({"side": side, **stats, "ledger": ledger(url, side)})
    return out


async def measure_litellm(url: str, requests: list[Request]) -> list[dict[str, Any]]:
    """`litellm`: the local model priced 0, as a user writes it. LiteLLM reads a 0 price as "none
    given" and ranks the deployment at $5 per token (its default), so it never picks the free
    local model. `litellm_local_eps`: the same with the local model at $1e-12 per token, the
    work-around, so that LiteLLM routes local first too."""
    from bench.setups import quiet_litellm

    quiet_litellm()
    out = []
    for side, local_price in (("litellm", 0.0), ("litellm_local_eps", 1e-12)):
        router = litellm_router(f"{url}/{side}/v1", local_price)

        def call(r: Request, router: Any = router) -> Awaitable[Any]:
            return router.acompletion(model="cheap", messages=[{"role": "user", "content": r.prompt}],
                                      max_tokens=MAX_TOKENS)

        stats = await run_side(requests, call)
        out.append({"side": side, **stats, "ledger": ledger(url, side)})
    return out


def litellm_router(base_url: str, local_price: float) -> Any:
    from litellm import Router

    def deployment(group: str, name: str) -> dict[str, Any]:
        price_in, price_out = MODELS[name]["price"]  # type: ignore[misc]
        if name == LOCAL:
            price_in = price_out = local_price * 1e6
        return {
            "model_name": group,
            "litellm_params": {"model": f"openai/{name}", "api_base": base_url, "api_key": KEY,
                               "input_cost_per_token": price_in / 1e6, "output_cost_per_token": price_out / 1e6,
                               "max_retries": 0, "timeout": TIMEOUT_S},
            "model_info": {"max_input_tokens": MODELS[name]["window"], "id": name},
        }

    # Cost-based routing picks the cheapest healthy deployment of a group; on failure it retries
    # (cooling the failed one down), then falls back from the cheap group to the dear one.
    cheap = [LOCAL, "gemini-2.0-flash", "gpt-4o-mini", "claude-3-5-haiku"]
    dear = ["gpt-4o", "claude-sonnet-4"]
    return Router(
        model_list=[deployment("cheap", m) for m in cheap] + [deployment("dear", m) for m in dear],
        routing_strategy="cost-based-routing", fallbacks=[{"cheap": ["dear"]}], num_retries=2,
        enable_pre_call_checks=True, timeout=TIMEOUT_S, retry_after=0,
    )


def side_main(args: argparse.Namespace) -> None:
    requests = workload(SEED, 400 if args.quick else 2000)
    measure = measure_ours if args.side == "ours" else measure_litellm
    for result in asyncio.run(measure(args.url, requests)):
        emit({"benchmark": "cost", "side": result["side"], "metrics": metrics(result), "raw": result})


def metrics(result: dict[str, Any]) -> dict[str, Any]:
    """One figure each (a whole workload is one sample), in the shape `bench.report` reads."""
    cost = Decimal(result["ledger"]["cost"])

    def one(unit: str, v: float) -> dict[str, Any]:
        return {"unit": unit, "median": v, "noise": [v, v], "n": 1}

    m = {"cost": one("USD", float(cost)), "success_rate": one("%", 100 * result["answered"] / result["requests"]),
         "wall_time": one("s", result["wall_s"])}
    if "budget_usd" in result:
        m["overspend"] = one("USD", float(max(Decimal(0), cost - Decimal(result["budget_usd"]))))
        m["budget"] = one("USD", float(result["budget_usd"]))
    return m


# -- the runner ---------------------------------------------------------------------------------

def runner_main(args: argparse.Namespace) -> None:
    """Start the server, run our sides in the project's venv and LiteLLM's in bench/.venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "GOOGLE_", "GEMINI_"))}
    env.update({"PYTHONPATH": str(venv.REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
                "LITELLM_LOG": "ERROR", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    ours_python = Path(args.project_python) if args.project_python else venv.project_python()
    litellm_python = Path(args.bench_python) if args.bench_python else venv.python()
    server = subprocess.Popen([sys.executable, "-m", "bench.cost_server", str(SEED)], cwd=venv.REPO, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        q = ["--quick"] if args.quick else []
        for side, python in (("ours", ours_python), ("litellm", litellm_python)):
            if python is None or not python.exists():
                emit({"benchmark": "cost", "side": side, "skipped": f"no python for side {side}: {python}"})
                continue
            child = subprocess.run([str(python), "-m", "bench.cost", "--side", side, "--url", url, *q],
                                   cwd=venv.REPO, env=env, capture_output=True, text=True, timeout=3600)
            if child.returncode != 0:
                emit({"benchmark": "cost", "side": side, "skipped": f"side {side} failed: {child.stderr[-2000:]}"})
                continue
            sys.stdout.write(child.stdout)
            sys.stdout.flush()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--side", choices=("ours", "litellm"))
    parser.add_argument("--url")
    parser.add_argument("--project-python", help="the python for our sides (default: the project's .venv)")
    parser.add_argument("--bench-python", help="the python for LiteLLM's side (default: bench/.venv)")
    args = parser.parse_args()
    if args.side is None:
        runner_main(args)
    else:
        side_main(args)


if __name__ == "__main__":
    main()
