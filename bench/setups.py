"""The contenders, configured alike: the raw OpenAI SDK, our `LLMManager`, LiteLLM's `Router`.

Every one talks to the same loopback server, with the same request, no retries, and a fallback
list of two models of which the first answers (or, for the fallback benchmark, refuses
connections). Circuit breakers (ours) and cooldowns (LiteLLM's) can be switched off so that
every call pays the failure instead of skipping a model that is known to be down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

PROMPT = "Say ok."
MAX_TOKENS = 16
TEMPERATURE = 0.0
MODEL = "bench-model"
KEY = "bench-key"  # the loopback server takes any key
MESSAGES = [{"role": "user", "content": PROMPT}]

Call = Callable[[], Awaitable[Any]]


def openai_client(base_url: str, transport: str = "default") -> Any:
    """The raw SDK on its default client, or (`transport="aiohttp"`) on its `DefaultAioHttpClient`,
    the transport amaos-llm picks when aiohttp is installed."""
    import openai

    http_client = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    return openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, http_client=http_client)


def our_transport() -> str:
    """The transport our OpenAI provider picks in this process ("aiohttp" or "default")."""
    from amaos_llm import ModelSpec
    from amaos_llm.providers._transport import choose_transport

    return choose_transport(ModelSpec(name="probe", provider="openai_compatible", base_url="http://127.0.0.1:1/v1"))


def aiohttp_floor(base_url: str) -> tuple[Call, Callable[[], Awaitable[Any]]]:
    """The floor: a bare aiohttp POST of the same request, the reply's JSON parsed; no SDK at all."""
    import json

    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    url = f"{base_url}/chat/completions"
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS,
                       "temperature": TEMPERATURE}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}

    async def call() -> Any:
        async with session.post(url, data=body, headers=headers) as response:
            return json.loads(await response.read())

    return call, session.close


def raw_call(client: Any) -> Call:
    async def call() -> Any:
        return await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=TEMPERATURE
        )

    return call


def raw_post_call(client: Any) -> Call:
    """The raw SDK's `post()` with the JSON `create()` sends: the call our OpenAI provider makes (it
    skips `create()`'s body transform and typed reply), so ours − this is what is ours alone."""
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "temperature": TEMPERATURE}

    async def call() -> Any:
        return await client.post("/chat/completions", cast_to=object, body=body,
                                 options={"security": {"bearer_auth": True}})

    return call


def after(first: Call, second: Call) -> Call:
    """`first`, then `second`; the result of `second`."""
    async def call() -> Any:
        await first()
        return await second()

    return call


def raw_fallback_call(first: Any, second: Any) -> Call:
    """What a hand-written fallback costs: try the first client, on a connection error the second."""
    import openai

    first_call, second_call = raw_call(first), raw_call(second)

    async def call() -> Any:
        try:
            return await first_call()
        except openai.APIConnectionError:
            return await second_call()

    return call


def our_manager(first_url: str, second_url: str, *, breakers: bool = True) -> Any:
    from amaos_llm import Defaults, LLMConfig, LLMManager, ModelSpec

    def spec(name: str, url: str, priority: int) -> ModelSpec:
        return ModelSpec(name=name, provider="openai_compatible", model=MODEL, base_url=url, api_key=KEY,
                         priority=priority, max_retries=0)

    defaults = Defaults(max_retries=0, **({} if breakers else {"breaker_threshold": 10**9}))
    return LLMManager(LLMConfig(defaults=defaults, models=[spec("first", first_url, 2), spec("second", second_url, 1)]))


def our_call(manager: Any) -> Call:
    async def call() -> Any:
        return await manager.complete(PROMPT, max_tokens=MAX_TOKENS, temperature=TEMPERATURE)

    return call


async def model_function(messages: Any, **params: Any) -> dict[str, Any]:
    """The in-process model: as cheap as a model can be, so what is left is routing."""
    return {"content": "ok", "input_tokens": 12, "output_tokens": 1}


def our_callable_manager() -> Any:
    from amaos_llm import Defaults, LLMConfig, LLMManager

    manager = LLMManager(LLMConfig(defaults=Defaults(max_retries=0)))
    manager.register_model("first", model_function, priority=2, max_retries=0)
    manager.register_model("second", model_function, priority=1, max_retries=0)
    return manager


def function_call() -> Call:
    """The callable alone: the baseline the in-process routing overhead is measured against."""
    async def call() -> Any:
        return await model_function(MESSAGES, temperature=TEMPERATURE, max_tokens=MAX_TOKENS)

    return call


def quiet_litellm() -> None:
    """LiteLLM as a production user runs it: no telemetry, no callbacks, no console logging.

    `LITELLM_LOCAL_MODEL_COST_MAP` must be set before the import, or it fetches its price list
    from the internet; the suite sets it for every child process.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    litellm.callbacks = []
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm.service_callback = []
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def litellm_router(first_url: str | None, second_url: str | None, *, cooldowns: bool = True,
                   mock: str | None = None) -> Any:
    """A Router with deployments `first` and `second`, falling back from the first to the second.

    With `mock`, no HTTP at all: LiteLLM answers `mock` itself (its in-process path).
    """
    quiet_litellm()
    from litellm import Router

    def deployment(name: str, url: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"model": f"openai/{MODEL}", "api_key": KEY, "max_retries": 0}
        if mock is not None:
            params["mock_response"] = mock
        else:
            params["api_base"] = url
        return {"model_name": name, "litellm_params": params}

    return Router(
        model_list=[deployment("first", first_url), deployment("second", second_url)],
        fallbacks=[{"first": ["second"]}],
        num_retries=0,
        disable_cooldowns=not cooldowns,
    )


def litellm_call(router: Any) -> Call:
    async def call() -> Any:
        return await router.acompletion(model="first", messages=MESSAGES, max_tokens=MAX_TOKENS,
                                        temperature=TEMPERATURE)

    return call
