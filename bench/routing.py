"""Benchmarks 1 and 2: routing overhead per call, and the cost of falling back.

One process per side (`ours` or `litellm`). Each side runs alternating repeats against the raw
OpenAI SDK in the same process, so its overhead (side − raw SDK) is paired repeat by repeat.
Ours runs in the project's venv and its raw SDK on the same transport as our provider (aiohttp
when installed); LiteLLM in bench/.venv against the openai<3 it pins, on its default client.
Beside the wall time, the process CPU per call of each side (and the difference):

- `http`: a 2-model fallback list, the first healthy, against the loopback server. Ours is also
  set against the SDK's `post()` with the same JSON, the call our provider makes in place of
  `create()`: over `create()` is what a user saves or pays, over `post()` what is ours alone.
- `in_process`: ours with two registered callables vs the callable alone; LiteLLM with
  `mock_response` (its path with no HTTP), which is all overhead.
- `fallback`: the first model refuses connections; time until the second answers, against a
  hand-written try/except over two raw SDK clients. Breakers and cooldowns are off on both
  sides, so every call pays the refusal.

    python -m bench.routing --side ours --url http://127.0.0.1:PORT/v1 --refused-url http://127.0.0.1:DEAD/v1
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench import setups
from bench.timing import alternating, difference, emit, metric, value

FULL = {"count": 1000, "repeats": 5, "warmup": 200, "fallback_count": 300}
QUICK = {"count": 150, "repeats": 3, "warmup": 30, "fallback_count": 30}


async def measure_ours(url: str, refused: str, n: dict[str, int]) -> dict[str, Any]:
    # The raw SDK on the transport our provider picks, so the overhead is ours alone.
    transport = setups.our_transport()
    raw = setups.openai_client(url, transport)
    raw_refused = setups.openai_client(refused, transport)
    http = setups.our_manager(url, url)
    local = setups.our_callable_manager()
    falling = setups.our_manager(refused, url, breakers=False)
    cpu: dict[str, float] = {}
    try:
        s = await alternating({"raw": setups.raw_call(raw), "post": setups.raw_post_call(raw),
                               "ours": setups.our_call(http)},
                              count=n["count"], repeats=n["repeats"], warmup=n["warmup"], cpu=cpu)
        c = await alternating({"fn": setups.function_call(), "ours": setups.our_call(local)},
                              count=n["count"], repeats=n["repeats"], warmup=n["warmup"])
        # What the same in-process call costs inside an HTTP cycle: the raw SDK call with it run just
        # before, against the raw call alone. The HTTP overhead is to be read against this figure.
        inside = await alternating({"raw": setups.raw_call(raw), "raw_after": setups.after(setups.our_call(local),
                                                                                           setups.raw_call(raw))},
                                   count=n["count"], repeats=n["repeats"], warmup=n["warmup"])
        f = await alternating({"raw": setups.raw_fallback_call(raw_refused, raw), "ours": setups.our_call(falling)},
                              count=n["fallback_count"], repeats=n["repeats"], warmup=n["warmup"] // 4)
        check = await setups.our_call(falling)()
        assert check.model_name == "second" and len(check.attempts) == 2, check
    finally:
        for m in (http, local, falling):
            await m.aclose()
        await raw.close()
        await raw_refused.close()
    calls = n["count"] * n["repeats"]
    return {
        "raw_sdk": metric(s["raw"]),
        "http": metric(s["ours"]),
        "http_overhead": difference(s["ours"], s["raw"]),
        "raw_post": metric(s["post"]),
        "post_overhead": difference(s["ours"], s["post"]),
        "raw_sdk_cpu": value(cpu["raw"] / calls * 1e6, "us"),
        "http_cpu": value(cpu["ours"] / calls * 1e6, "us"),
        "http_cpu_overhead": value((cpu["ours"] - cpu["raw"]) / calls * 1e6, "us"),
        "post_cpu_overhead": value((cpu["ours"] - cpu["post"]) / calls * 1e6, "us"),
        "callable_alone": metric(c["fn"]),
        "in_process": metric(c["ours"]),
        "in_process_overhead": difference(c["ours"], c["fn"]),
        "in_process_inside_http": difference(inside["raw_after"], inside["raw"]),
        "raw_fallback": metric(f["raw"]),
        "fallback": metric(f["ours"]),
        "fallback_overhead": difference(f["ours"], f["raw"]),
    }


async def measure_litellm(url: str, refused: str, n: dict[str, int]) -> dict[str, Any]:
    raw = setups.openai_client(url)
    raw_refused = setups.openai_client(refused)
    http = setups.litellm_router(url, url)
    mock = setups.litellm_router(None, None, mock="ok")
    falling = setups.litellm_router(refused, url, cooldowns=False)
    cpu: dict[str, float] = {}
    try:
        s = await alternating({"raw": setups.raw_call(raw), "litellm": setups.litellm_call(http)},
                              count=n["count"], repeats=n["repeats"], warmup=n["warmup"], cpu=cpu)
        c = await alternating({"litellm": setups.litellm_call(mock)},
                              count=n["count"], repeats=n["repeats"], warmup=n["warmup"])
        f = await alternating({"raw": setups.raw_fallback_call(raw_refused, raw),
                               "litellm": setups.litellm_call(falling)},
                              count=n["fallback_count"], repeats=n["repeats"], warmup=n["warmup"] // 4)
        check = await setups.litellm_call(falling)()
        assert check.choices[0].message.content == "ok", check
    finally:
        await raw.close()
        await raw_refused.close()
    in_process = metric(c["litellm"])
    calls = n["count"] * n["repeats"]
    return {
        "raw_sdk": metric(s["raw"]),
        "http": metric(s["litellm"]),
        "http_overhead": difference(s["litellm"], s["raw"]),
        "raw_sdk_cpu": value(cpu["raw"] / calls * 1e6, "us"),
        "http_cpu": value(cpu["litellm"] / calls * 1e6, "us"),
        "http_cpu_overhead": value((cpu["litellm"] - cpu["raw"]) / calls * 1e6, "us"),
        "in_process": in_process,
        "in_process_overhead": {k: in_process[k] for k in ("unit", "median", "noise", "repeats")},
        "raw_fallback": metric(f["raw"]),
        "fallback": metric(f["litellm"]),
        "fallback_overhead": difference(f["litellm"], f["raw"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=("ours", "litellm"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--refused-url", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = QUICK if args.quick else FULL
    measure = measure_ours if args.side == "ours" else measure_litellm
    metrics = asyncio.run(measure(args.url, args.refused_url, n))
    params = {"transport": setups.our_transport()} if args.side == "ours" else {}
    emit({"benchmark": "routing", "side": args.side, "metrics": metrics, "params": params})


if __name__ == "__main__":
    main()
