"""What every HTTP wire does the same way, run against each wire's fake (the table is in wires.py),
on each transport: aiohttp, which the providers choose when it is installed, and the SDK's default.

What only one wire does lives in test_{ollama,openai,anthropic,google}.py.
"""

from __future__ import annotations

import re
from typing import Literal

import anyio
import pytest

from amaos_llm.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from amaos_llm.providers.base import Provider
from tests.amaos_llm.providers.wires import KEY, MODEL, OPENAI, TRANSPORTS, WIRES, Wire, ask, at, make, without_aiohttp
from tests.support.fakes import FakeServer

pytestmark = pytest.mark.anyio

every_wire = pytest.mark.parametrize("wire", WIRES, ids=str)
keyed_wires = pytest.mark.parametrize("wire", [w for w in WIRES if w.key_env], ids=str)
seeded_wires = pytest.mark.parametrize("wire", [w for w in WIRES if w.seed], ids=str)
key_header_wires = pytest.mark.parametrize("wire", [w for w in WIRES if w.key_header], ids=str)


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "default":
        without_aiohttp(monkeypatch)
    return str(request.param)


# --- request and reply ---------------------------------------------------------------------------
@every_wire
async def test_reply_carries_content_usage_finish_reason_and_model(wire: Wire, provider: Provider) -> None:
    reply = await provider.complete(ask("hello there world", system="be brief"))
    assert (reply.content, reply.input_tokens, reply.output_tokens) == ("echo: hello there world", 5, 4)
    assert (reply.finish_reason, reply.model) == (wire.finish[0], MODEL)


@every_wire
async def test_reply_cut_at_max_tokens_reports_the_length_finish_reason(wire: Wire, provider: Provider) -> None:
    reply = await provider.complete(ask("one two three four", max_tokens=2))
    assert (reply.content, reply.output_tokens, reply.finish_reason) == ("echo: one", 2, wire.finish[1])


@every_wire
async def test_temperature_zero_and_max_tokens_reach_the_wire(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    await provider.complete(ask(max_tokens=7))
    body = fake.requests[0].body
    assert (at(body, wire.temperature), at(body, wire.max_tokens)) == (0.0, 7)


@seeded_wires
async def test_seed_reaches_the_wire(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    assert wire.seed is not None
    await provider.complete(ask(seed=42))
    assert at(fake.requests[0].body, wire.seed) == 42


@every_wire
async def test_generation_is_a_post_to_the_wire_endpoint(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    await provider.complete(ask())
    assert (fake.requests[0].method, fake.requests[0].path) == ("POST", wire.generate)


@every_wire
async def test_system_prompt_and_user_turn_land_where_the_wire_wants_them(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    await provider.complete(ask("hi", system="be brief"))
    body = fake.requests[0].body
    assert {path: at(body, path) for path in wire.prompt} == wire.prompt


@key_header_wires
async def test_key_travels_in_the_wire_header(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    assert wire.key_header is not None
    header, prefix = wire.key_header
    await provider.complete(ask())
    assert fake.requests[0].headers[header] == f"{prefix}{KEY}"


@keyed_wires
async def test_missing_key_is_authentication_error_naming_the_env_var(wire: Wire, fake: FakeServer) -> None:
    p = make(wire, fake.url, key=None)
    try:
        with pytest.raises(AuthenticationError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert (str(caught.value), len(fake.requests)) == (f"{wire.name}: no API key; set {wire.key_env}", 0)


@every_wire
async def test_base_url_none_reads_the_env_var(wire: Wire, fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wire.base_url_env, wire.env_url(fake))
    p = make(wire, None)
    try:
        reply = await p.complete(ask("via env"))
    finally:
        await p.aclose()
    assert (reply.content, len(fake.requests)) == ("echo: via env", 1)


# --- HTTP errors -----------------------------------------------------------------------------------
@every_wire
async def test_429_is_rate_limit_error_with_retry_after_where_the_sdk_exposes_it(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.fail(429, retry_after="7", message="too many requests")
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == f"{wire.name}: HTTP 429: too many requests"
    assert caught.value.retry_after == wire.retry_after


@every_wire
@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (401, AuthenticationError), (500, ServerError)],
    ids=["400-bad-request", "401-authentication", "500-server"],
)
async def test_http_error_status_maps_to_its_error_with_status_and_message(
    wire: Wire, provider: Provider, fake: FakeServer, status: int, error: type[ProviderError]
) -> None:
    fake.fail(status, message="the server says no")
    with pytest.raises(error) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == (f"{wire.name}: HTTP {status}: the server says no", status)


@every_wire
async def test_a_failure_is_sent_once_and_the_next_call_succeeds(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.fail(503, times=1)
    with pytest.raises(ServerError):
        await provider.complete(ask())
    assert len(fake.requests) == 1  # the SDK's own retries are off
    assert (await provider.complete(ask("again"))).content == "echo: again"


@every_wire
async def test_malformed_json_is_server_error(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    fake.malformed = True
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == (
        f"{wire.name}: malformed reply: JSONDecodeError: Expecting value: line 1 column 16 (char 15)"
    )


@keyed_wires
async def test_key_never_appears_in_error_or_repr(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    status, error = wire.bad_key
    fake.fail(status, message=f"API key not valid: {KEY}")
    with pytest.raises(error) as caught:
        await provider.complete(ask())
    assert str(caught.value) == f"{wire.name}: HTTP {status}: API key not valid: ***"
    assert KEY not in repr(provider)


# --- connection ----------------------------------------------------------------------------------
async def refused(provider: Provider) -> str:
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert caught.value.connected is False and not caught.value.retryable  # it would fail the same way again
    return str(caught.value)


@every_wire
async def test_refused_connection_is_connection_error_naming_the_url(
    wire: Wire, closed_port: str, transport: str
) -> None:
    url = closed_port + wire.url_path
    message = await refused(make(wire, url))
    assert re.fullmatch(wire.refused(url, transport), message, re.DOTALL), message


@every_wire
async def test_refused_connection_names_the_url_the_sdk_read_from_its_env_var(
    wire: Wire, closed_port: str, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    url = closed_port + wire.url_path
    monkeypatch.setenv(wire.base_url_env, url)
    message = await refused(make(wire, None))
    assert re.fullmatch(wire.refused(url, transport), message, re.DOTALL), message


@every_wire
async def test_a_refused_urls_user_info_and_query_stay_out_of_the_message(
    wire: Wire, closed_port: str, transport: str
) -> None:
    if (wire, transport) == (OPENAI, "aiohttp"):
        pytest.skip("aiohttp refuses user info next to openai's Bearer header before connecting (test_openai.py)")
    host = closed_port.removeprefix("http://")
    message = await refused(make(wire, f"http://user:{KEY}@{host}{wire.url_path}?key={KEY}"))
    assert re.fullmatch(wire.refused(closed_port + wire.url_path, transport), message, re.DOTALL), message


@every_wire
@pytest.mark.parametrize("fault", ["hang_up", "cut"], ids=["no-reply", "reply-cut-short"])
async def test_a_connection_lost_before_the_whole_reply_is_connection_error_naming_the_url(
    wire: Wire, provider: Provider, fake: FakeServer, fault: Literal["hang_up", "cut"], transport: str
) -> None:
    fake.reply_fault = fault
    with pytest.raises(ProviderConnectionError) as caught:
        await provider.complete(ask())
    assert caught.value.connected is True and caught.value.retryable  # the request went out: a retry may pass
    message = str(caught.value)
    assert re.fullmatch(re.escape(f"{wire.name}: connection to {fake.url} failed: ") + wire.lost[transport][fault],
                        message), message


@every_wire
async def test_slow_server_call_is_cancellable(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    fake.delay = 30
    with anyio.fail_after(5):
        with anyio.move_on_after(0.2) as scope:
            await provider.complete(ask())
    assert scope.cancelled_caught


@every_wire
async def test_aclose_twice_is_harmless(wire: Wire, fake: FakeServer) -> None:
    p = make(wire, fake.url)
    await p.complete(ask())
    await p.aclose()
    await p.aclose()
    assert len(fake.requests) == 1


# --- health --------------------------------------------------------------------------------------
@every_wire
async def test_health_is_true_when_the_server_knows_the_model(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.models = ["other", MODEL]
    assert await provider.health() is True
    assert (fake.requests[0].method, fake.requests[0].path) == ("GET", wire.health)


@every_wire
async def test_health_is_false_when_the_server_does_not_know_the_model(provider: Provider, fake: FakeServer) -> None:
    fake.models = ["other"]
    assert await provider.health() is False


@every_wire
async def test_health_is_false_when_unreachable(wire: Wire, closed_port: str) -> None:
    p = make(wire, closed_port + wire.url_path)
    try:
        assert await p.health() is False
    finally:
        await p.aclose()


@every_wire
async def test_max_connections_caps_the_sdk_connection_pool(wire: Wire, fake: FakeServer) -> None:
    fake.delay = 0.2
    provider = make(wire, fake.url, max_connections=2)
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(provider.complete, ask())
    await provider.aclose()
    assert (len(fake.requests), fake.peak_connections) == (6, 2)


@every_wire
async def test_without_max_connections_the_sdk_opens_a_connection_per_concurrent_call(
    wire: Wire, fake: FakeServer
) -> None:
    fake.delay = 0.2
    provider = make(wire, fake.url)
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(provider.complete, ask())
    await provider.aclose()
    assert fake.peak_connections == 6
