"""The cost benchmark's workload, the same for every side: requests, models, prices and faults, all
drawn from one seed (the server and each side's process derive the same values independently).

Prices are USD per million tokens, as published for these model ids; windows in tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LOCAL = "local-8k"
LOCAL_WINDOW = 8192
MAX_TOKENS = 256
MODELS: dict[str, dict[str, object]] = {
    LOCAL: {"price": (0, 0), "window": LOCAL_WINDOW, "faults": 0.0},
    "gpt-4o": {"price": (2.5, 10), "window": 128_000, "faults": 0.03},
    "gpt-4o-mini": {"price": (0.15, 0.6), "window": 128_000, "faults": 0.05},
    "claude-3-5-haiku": {"price": (0.8, 4), "window": 200_000, "faults": 0.04},
    "claude-sonnet-4": {"price": (3, 15), "window": 200_000, "faults": 0.02},
    "gemini-2.0-flash": {"price": (0.1, 0.4), "window": 1_048_576, "faults": 0.08},
}
CLOUD = [name for name in MODELS if name != LOCAL]
CHEAPEST_CLOUD = "gemini-2.0-flash"
BEST_CLOUD = "claude-sonnet-4"
FAULT_KINDS = ("500", "429", "timeout")


@dataclass(frozen=True)
class Request:
    id: int
    prompt: str
    tokens: int  # its estimate, ⌈chars / 4⌉


def workload(seed: int, n: int) -> list[Request]:
    """`n` requests: 70 % short (50–800 tokens), 30 % long (4k–60k)."""
    rng = random.Random(seed)
    requests = []
    for i in range(n):
        tokens = rng.randint(50, 800) if rng.random() < 0.7 else rng.randint(4_000, 60_000)
        head = f"[req {i}] Summarise the following notes. "
        filler = "note " * ((tokens * 4 - len(head)) // 5 + 1)
        prompt = (head + filler)[: tokens * 4]
        requests.append(Request(i, prompt, -(-len(prompt) // 4)))
    return requests


def local_up(seed: int, req: int) -> bool:
    """The local model is up for 60 % of the requests."""
    return random.Random(f"{seed}:local:{req}").random() < 0.6


def fault(seed: int, req: int, model: str, attempt: int) -> str | None:
    """The fault this attempt meets (`500`, `429`, `timeout`), or None: the model's rate, 2–8 %."""
    rng = random.Random(f"{seed}:{req}:{model}:{attempt}")
    rate = float(MODELS[model]["faults"])  # type: ignore[arg-type]
    return rng.choice(FAULT_KINDS) if rng.random() < rate else None
