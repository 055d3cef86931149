"""Which transport each HTTP provider sends through, and its connection pool at high concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.errors import ConfigError
from amaos_llm.providers import _transport
from amaos_llm.providers.base import Provider
from tests.amaos_llm.providers.wires import TRANSPORTS, WIRES, Wire, ask, make, without_aiohttp
from tests.support.fakes import FakeServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]

every_wire = pytest.mark.parametrize("wire", WIRES, ids=str)
every_transport = pytest.mark.parametrize("transport", TRANSPORTS)


def spec(**fields: Any) -> ModelSpec:
    return ModelSpec(name="m", provider="openai_compatible", base_url="http://127.0.0.1:1/v1", **fields)


def sent_through(provider: Provider) -> str:
    """What the provider's SDK client really sends through, read from the client it built."""
    client = provider._sdk_client
    name = provider.spec.provider
    if name == "ollama":
        inner = type(client._client._transport).__module__  # httpx's own, or httpx_aiohttp's
    elif name == "google":
        api = client._api_client
        inner = "aiohttp" if api._use_aiohttp() and api._http_options.aiohttp_client is not None else "httpx2"
    else:  # openai, anthropic: the transport of their httpx2 client
        inner = type(client._client._transport).__module__
    return "aiohttp" if "aiohttp" in inner else "default"


# --- the choice ------------------------------------------------------------------------------------
async def test_aiohttp_is_chosen_when_installed_on_asyncio() -> None:
    assert _transport.choose_transport(spec()) == "aiohttp"


async def test_the_sdk_default_is_chosen_without_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    without_aiohttp(monkeypatch)
    assert _transport.choose_transport(spec()) == "default"


async def test_the_sdk_default_is_chosen_when_a_module_the_sdk_needs_besides_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transport, "installed", lambda module: module != "httpx_aiohttp")
    assert _transport.choose_transport(spec(), "httpx_aiohttp") == "default"


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_sdk_default_is_chosen_on_trio_which_aiohttp_cannot_run_on(anyio_backend: str) -> None:
    assert _transport.choose_transport(spec()) == "default"


async def test_http_transport_default_keeps_the_sdk_default_although_aiohttp_is_installed() -> None:
    assert _transport.choose_transport(spec(http_transport="default")) == "default"


async def test_http_transport_aiohttp_without_aiohttp_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    without_aiohttp(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        _transport.choose_transport(spec(http_transport="aiohttp"), "httpx_aiohttp")
    expected = "m: http_transport 'aiohttp' needs aiohttp, httpx_aiohttp: pip install 'amaos-llm[fast]'"
    assert str(caught.value) == expected


def test_an_import_blocked_in_sys_modules_counts_as_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    assert _transport.installed("aiohttp") is False


def test_the_default_pool_is_a_thousand_connections_and_max_connections_wins() -> None:
    assert (_transport.pool_size(spec()), _transport.pool_size(spec(max_connections=7))) == (1000, 7)


# --- what each provider really sends through ---------------------------------------------------------
@every_wire
@every_transport
async def test_each_provider_sends_through_the_chosen_transport(
    wire: Wire, fake: FakeServer, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if transport == "default":
        without_aiohttp(monkeypatch)
    provider = make(wire, fake.url)
    try:
        reply = await provider.complete(ask("hi"))
        assert (reply.content, sent_through(provider)) == ("echo: hi", transport)
    finally:
        await provider.aclose()


@every_wire
async def test_http_transport_default_is_obeyed_by_each_provider(wire: Wire, fake: FakeServer) -> None:
    provider = make(wire, fake.url, http_transport="default")
    try:
        await provider.complete(ask())
        assert sent_through(provider) == "default"
    finally:
        await provider.aclose()


def test_with_aiohttp_unimportable_every_provider_answers_on_its_sdk_default() -> None:
    """A fresh interpreter where importing aiohttp fails, as where the `fast` extra is absent."""
    code = """
import sys
sys.modules["aiohttp"] = None  # `import aiohttp` now raises ImportError, in the SDKs too
import anyio, json
from tests.amaos_llm.providers.test_transport import sent_through
from tests.amaos_llm.providers.wires import WIRES, ask, make
from tests.support.fakes import AnthropicFake, GoogleFake, OllamaFake, OpenAIFake

FAKES = {"ollama_fake": OllamaFake, "openai_fake": OpenAIFake, "anthropic_fake": AnthropicFake,
         "google_fake": GoogleFake}

async def main():
    out = {}
    for wire in WIRES:
        with FAKES[wire.fixture]() as fake:
            provider = make(wire, fake.url)
            reply = await provider.complete(ask("hi"))
            out[wire.name] = [reply.content, sent_through(provider)]
            await provider.aclose()
    print(json.dumps(out))

anyio.run(main)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {w.name: ["echo: hi", "default"] for w in WIRES}


# --- the pool at high concurrency ----------------------------------------------------------------
async def concurrent_calls(provider: Provider, count: int) -> list[str]:
    replies: list[str] = []

    async def one(i: int) -> None:
        replies.append((await provider.complete(ask(f"call {i}"))).content)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return replies


@every_wire
@every_transport
async def test_500_concurrent_calls_all_answer_on_at_most_max_connections(
    wire: Wire, fake: FakeServer, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if transport == "default":
        without_aiohttp(monkeypatch)
    fake.hold_until, fake.delay = 20, 0.02  # the first 20 fill the pool; every call then holds it a while
    provider = make(wire, fake.url, max_connections=20)
    try:
        replies = await concurrent_calls(provider, 500)
    finally:
        await provider.aclose()
    assert (sorted(replies), len(fake.requests), fake.peak_connections) == (
        sorted(f"echo: call {i}" for i in range(500)), 500, 20
    )


@every_wire
async def test_500_concurrent_calls_on_the_default_pool_each_get_a_connection(wire: Wire, fake: FakeServer) -> None:
    fake.hold_until = 500  # no answer before all 500 are in flight
    provider = make(wire, fake.url)
    try:
        replies = await concurrent_calls(provider, 500)
    finally:
        await provider.aclose()
    assert (len(replies), fake.peak_connections) == (500, 500)
