"""The bedrock provider through aiobotocore against the Bedrock fake: Converse's body, usage with
the prompt cache, error codes, connections, credentials, health, prices."""

from __future__ import annotations

import logging

import pytest
from genai_prices import Usage, calc_price

from amaos_llm.errors import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceeded,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.providers.bedrock import BedrockProvider, BedrockReply, bedrock_price_id
from amaos_llm.types import Message
from tests.amaos_llm.providers.bedrock_fixtures import ACCESS_KEY, CREDENTIALS, MODEL, PROFILE, ask, bedrock_spec
from tests.support.bedrock_fake import BedrockFake

pytestmark = pytest.mark.anyio


# --- the request ---------------------------------------------------------------------------------
async def test_converse_body_carries_system_blocks_messages_and_inference_config(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    await bedrock.complete(ask("hello there", system="be brief", max_tokens=7))
    req = bedrock_fake.requests[0]
    assert (req.method, req.path) == ("POST", "/model/anthropic.claude-test-v1%3A0/converse")
    assert req.body == {
        "system": [{"text": "be brief"}],
        "messages": [{"role": "user", "content": [{"text": "hello there"}]}],
        "inferenceConfig": {"maxTokens": 7, "temperature": 0.0},
    }


async def test_every_request_is_signed_with_sigv4_for_the_specs_region(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    await bedrock.complete(ask())
    auth = bedrock_fake.requests[0].headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/bedrock/aws4_request" in auth
    assert bedrock_fake.requests[0].headers["x-amz-security-token"] == CREDENTIALS[1]


async def test_consecutive_messages_of_one_role_become_one_turn(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    messages = [Message(role="user", content="a"), Message(role="tool", content="b"),
                Message(role="assistant", content="c"), Message(role="user", content="d")]
    await bedrock.complete(ProviderRequest(messages=messages, model=MODEL, temperature=0.5, max_tokens=5))
    assert bedrock_fake.requests[0].body["messages"] == [
        {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}]},
        {"role": "user", "content": [{"text": "d"}]},
    ]


async def test_options_go_to_inference_config_or_to_the_model(aws_env: None, bedrock_fake: BedrockFake) -> None:
    p = BedrockProvider(bedrock_spec(bedrock_fake.url, options={"top_k": 20}))
    try:
        await p.complete(ask(topP=0.9))
    finally:
        await p.aclose()
    body = bedrock_fake.requests[0].body
    assert body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.0, "topP": 0.9}
    assert body["additionalModelRequestFields"] == {"top_k": 20}


# --- the reply -----------------------------------------------------------------------------------
async def test_reply_carries_the_servers_token_counts(bedrock: BedrockProvider) -> None:
    reply = await bedrock.complete(ask("one two three", system="be brief"))
    assert reply == BedrockReply(content="echo: one two three", input_tokens=5, output_tokens=4,
                                 finish_reason="stop", model=MODEL, tool_calls=[], cache_read_tokens=0,
                                 cache_write_tokens=0)


async def test_input_tokens_include_cache_reads_and_writes_which_are_also_kept_apart(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.cache_read, bedrock_fake.cache_write = 100, 20
    reply = await bedrock.complete(ask("one two three"))
    assert (reply.input_tokens, reply.output_tokens, reply.cache_read_tokens, reply.cache_write_tokens) == (
        3 + 100 + 20, 4, 100, 20)


async def test_a_reply_cut_at_max_tokens_finishes_with_length(bedrock: BedrockProvider) -> None:
    reply = await bedrock.complete(ask("one two three", max_tokens=2))
    assert (reply.content, reply.output_tokens, reply.finish_reason) == ("echo: one", 2, "length")


async def test_a_reply_without_usage_is_malformed_not_zero(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.extra_usage = {"inputTokens": None}  # JSON null: botocore drops the member
    with pytest.raises(ServerError, match=r"^bedrock: malformed reply: usage without token counts"):
        await bedrock.complete(ask())


async def test_a_reply_that_is_not_json_is_malformed(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.malformed = True
    with pytest.raises(ServerError, match=r"^bedrock: malformed reply: "):
        await bedrock.complete(ask())


# --- errors, by AWS error code -------------------------------------------------------------------
ERROR_CODES = [
    (429, "ThrottlingException", RateLimitError),
    (400, "ServiceQuotaExceededException", RateLimitError),
    (503, "ServiceUnavailableException", ServerError),
    (429, "ModelNotReadyException", ServerError),
    (500, "InternalServerException", ServerError),
    (424, "ModelErrorException", ServerError),
    (408, "ModelTimeoutException", ProviderTimeout),
    (403, "AccessDeniedException", AuthenticationError),
    (403, "UnrecognizedClientException", AuthenticationError),
    (400, "ValidationException", BadRequestError),
    (404, "ResourceNotFoundException", BadRequestError),
]


@pytest.mark.parametrize(("status", "code", "expected"), ERROR_CODES)
async def test_each_error_code_maps_to_its_class(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake, status: int, code: str, expected: type[ProviderError]
) -> None:
    bedrock_fake.fail(status, code=code, message="it went wrong")
    with pytest.raises(ProviderError) as caught:
        await bedrock.complete(ask())
    assert type(caught.value) is expected
    assert caught.value.status_code == status
    if code != "ResourceNotFoundException":
        assert str(caught.value) == f"bedrock: {code}: it went wrong"


async def test_the_code_decides_not_the_status(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.fail(400, code="ThrottlingException")  # a 400 that is a throttle
    with pytest.raises(RateLimitError):
        await bedrock.complete(ask())


async def test_an_unknown_code_falls_back_to_its_status(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.fail(502, code="BadGatewaySomething", message="upstream")
    with pytest.raises(ServerError, match=r"^bedrock: HTTP 502: BadGatewaySomething: upstream$"):
        await bedrock.complete(ask())


async def test_a_missing_model_names_the_model_id_and_the_region(aws_env: None, bedrock_fake: BedrockFake) -> None:
    p = BedrockProvider(bedrock_spec(bedrock_fake.url, model="anthropic.nothing-v9:0", region="eu-west-3"))
    try:
        with pytest.raises(BadRequestError) as caught:
            await p.complete(ask(model="anthropic.nothing-v9:0"))
    finally:
        await p.aclose()
    assert str(caught.value) == "bedrock: model 'anthropic.nothing-v9:0' not found in eu-west-3: Model not found."
    assert caught.value.status_code == 404


async def test_a_prompt_too_long_is_a_context_window_error_that_says_context(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.fail(400, code="ValidationException", message="Input is too long for requested model.")
    with pytest.raises(ContextWindowExceeded) as caught:
        await bedrock.complete(ask())
    assert str(caught.value) == (f"bedrock: the request does not fit {MODEL}'s context window: "
                                 "Input is too long for requested model.")
    assert not caught.value.retryable and not caught.value.breaker_failure


async def test_the_sdk_does_not_retry(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.fail(503)
    with pytest.raises(ServerError):
        await bedrock.complete(ask())
    assert len(bedrock_fake.requests) == 1  # botocore's default would have sent it 3 to 5 times


async def test_an_unknown_access_key_is_refused_as_aws_refuses_it(aws_env: None, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.access_keys = {"AKIAOTHERKEY00000000"}
    p = BedrockProvider(bedrock_spec(bedrock_fake.url))
    try:
        with pytest.raises(AuthenticationError, match=r"^bedrock: UnrecognizedClientException: The security token"):
            await p.complete(ask())
    finally:
        await p.aclose()


# --- connections ---------------------------------------------------------------------------------
async def test_a_refused_connection_names_the_url_and_did_not_go_out(aws_env: None, closed_port: str) -> None:
    p = BedrockProvider(bedrock_spec(closed_port))
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert str(caught.value).startswith(f"bedrock: connection to {closed_port} failed: EndpointConnectionError")
    assert caught.value.connected is False


async def test_a_hang_up_after_the_request_went_out_is_worth_a_retry(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.reply_fault = "hang_up"
    with pytest.raises(ProviderConnectionError) as caught:
        await bedrock.complete(ask())
    assert caught.value.connected is True


async def test_a_slow_server_is_a_timeout(aws_env: None, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.delay = 2.0
    p = BedrockProvider(bedrock_spec(bedrock_fake.url, timeout=0.3))
    try:
        with pytest.raises(ProviderTimeout, match=r"^bedrock: timed out: ReadTimeoutError"):
            await p.complete(ask())
    finally:
        await p.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_provider_says_it_needs_asyncio(aws_env: None, bedrock_fake: BedrockFake) -> None:
    p = BedrockProvider(bedrock_spec(bedrock_fake.url))
    try:
        with pytest.raises(ProviderError, match=r"^bedrock: aiobotocore runs on asyncio only \("):
            await p.complete(ask())
    finally:
        await p.aclose()


# --- credentials ---------------------------------------------------------------------------------
async def test_no_credentials_is_an_authentication_error_saying_what_to_set(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, bedrock_fake: BedrockFake
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    p = BedrockProvider(bedrock_spec(bedrock_fake.url))
    try:
        with pytest.raises(AuthenticationError, match=r"^bedrock: no AWS credentials found; set AWS_ACCESS_KEY_ID"):
            await p.complete(ask())
    finally:
        await p.aclose()
    assert bedrock_fake.requests == []


API_KEY = "ABSKQmVkcm9ja0FQSUtleS1mYWtl-never-shown"


@pytest.fixture
def api_key_only(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Bedrock API key and no AWS credentials."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", API_KEY)


async def test_a_bedrock_api_key_travels_as_a_bearer_token(
    api_key_only: None, bedrock_fake: BedrockFake, caplog: pytest.LogCaptureFixture
) -> None:
    bedrock_fake.bearer_tokens = {API_KEY}
    p = BedrockProvider(bedrock_spec(bedrock_fake.url))
    try:
        with caplog.at_level(logging.DEBUG):
            reply = await p.complete(ask("hi"))
        assert (reply.content, await p.health(), await p.has_credentials()) == ("echo: hi", True, True)
    finally:
        await p.aclose()
    assert [r.headers["authorization"] for r in bedrock_fake.requests] == [f"Bearer {API_KEY}"] * 2
    assert any("'Authorization': b'Bearer ***'" in r.getMessage() for r in caplog.records)
    assert [r for r in caplog.records if API_KEY in r.getMessage()] == []


async def test_a_refused_api_key_is_an_authentication_error_that_does_not_show_it(
    api_key_only: None, bedrock_fake: BedrockFake
) -> None:
    p = BedrockProvider(bedrock_spec(bedrock_fake.url))
    try:
        with pytest.raises(AuthenticationError, match=r"^bedrock: UnrecognizedClientException: Invalid API Key") as e:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert API_KEY not in str(e.value)


async def test_has_credentials_says_whether_the_chain_finds_any(
    bedrock: BedrockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await bedrock.has_credentials() is True
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    assert await bedrock.has_credentials() is False


async def test_flaky_failures_carry_their_aws_code(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.flaky(429, 1.0)
    with pytest.raises(RateLimitError, match=r"^bedrock: ThrottlingException: "):
        await bedrock.complete(ask())


async def test_credentials_appear_in_no_error_and_no_repr(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    shown = [repr(bedrock), str(bedrock.spec), repr(bedrock.spec)]
    errors = [(403, "AccessDeniedException"), (400, "ValidationException"), (500, "InternalServerException")]
    for status, code in errors:
        bedrock_fake.fail(status, code=code, message="it went wrong")
        with pytest.raises(ProviderError) as caught:
            await bedrock.complete(ask())
        shown += [str(caught.value), repr(caught.value)]
    bedrock_fake.recover()
    bedrock_fake.reply_fault = "hang_up"
    with pytest.raises(ProviderError) as cut:
        await bedrock.complete(ask())
    shown.append(str(cut.value))
    assert [s for s in shown if any(secret in s for secret in CREDENTIALS)] == []


async def test_botocores_debug_logs_do_not_show_the_session_token(
    bedrock: BedrockProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await bedrock.complete(ask())
    signed = [r.getMessage() for r in caplog.records if r.name in ("botocore.auth", "botocore.endpoint")]
    assert any("x-amz-security-token:***" in m for m in signed)
    assert any("'X-Amz-Security-Token': b'***'" in m for m in signed)
    assert [m for m in (r.getMessage() for r in caplog.records) if any(c in m for c in CREDENTIALS)] == []


# --- health --------------------------------------------------------------------------------------
async def test_health_asks_the_control_plane_for_the_model_and_never_generates(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    assert await bedrock.health() is True
    assert [(r.method, r.path) for r in bedrock_fake.requests] == [
        ("GET", "/foundation-models/anthropic.claude-test-v1%3A0")]


async def test_health_of_an_inference_profile_asks_for_the_profile(aws_env: None, bedrock_fake: BedrockFake) -> None:
    p = BedrockProvider(bedrock_spec(bedrock_fake.url, model=PROFILE))
    try:
        assert await p.health() is True
    finally:
        await p.aclose()
    assert [(r.method, r.path) for r in bedrock_fake.requests] == [
        ("GET", "/inference-profiles/us.anthropic.claude-test-v1%3A0")]


async def test_health_is_false_for_an_unknown_model_or_refused_credentials(
    aws_env: None, bedrock_fake: BedrockFake
) -> None:
    p = BedrockProvider(bedrock_spec(bedrock_fake.url, model="anthropic.unknown-v1:0"))
    try:
        assert await p.health() is False
    finally:
        await p.aclose()
    bedrock_fake.fail(403, code="AccessDeniedException")
    p = BedrockProvider(bedrock_spec(bedrock_fake.url))
    try:
        assert await p.health() is False
    finally:
        await p.aclose()
    assert {r.method for r in bedrock_fake.requests} == {"GET"}


async def test_health_is_false_when_nothing_listens(aws_env: None, closed_port: str) -> None:
    p = BedrockProvider(bedrock_spec(closed_port))
    try:
        assert await p.health() is False
    finally:
        await p.aclose()


# --- prices --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
        ("us.amazon.nova-lite-v1:0", "us.amazon.nova-lite-v1:0"),  # known as given: not stripped
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("eu.nobody.unknown-v1:0", "eu.nobody.unknown-v1:0"),  # unknown either way: left as given
    ],
)
def test_bedrock_price_id(model: str, priced_as: str) -> None:
    assert bedrock_price_id(model) == ("aws", priced_as)


def test_a_regional_profile_unknown_to_genai_prices_is_priced_as_its_model() -> None:
    # genai-prices matches most profile ids itself; this one it knows only without the prefix
    model = "anthropic.claude-fable-5-1-v1:0"
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    with pytest.raises(LookupError):
        calc_price(usage, f"eu.{model}", provider_id="aws")
    assert bedrock_price_id(f"eu.{model}") == ("aws", model)
    assert calc_price(usage, model, provider_id="aws").total_price > 0
