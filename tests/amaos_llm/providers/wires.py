"""The HTTP wires as a table, for the contract suite (test_contract.py) and the per-wire files.

A `Wire` says only what differs between providers where the contract needs it: how to point a
provider at a fake, the fake's fixture, the base-URL env var, where fields land in the recorded
request body (dotted paths), and the wire's spellings of finish reasons and errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from amaos_llm.config import ModelSpec
from amaos_llm.errors import AuthenticationError, BadRequestError, ProviderError
from amaos_llm.providers import _transport
from amaos_llm.providers.anthropic import AnthropicProvider
from amaos_llm.providers.base import Provider, ProviderRequest
from amaos_llm.providers.bedrock import BedrockProvider
from amaos_llm.providers.google import GoogleProvider
from amaos_llm.providers.ollama import OllamaProvider
from amaos_llm.providers.openai import OpenAIProvider
from amaos_llm.types import Message
from tests.support.fakes import FakeServer

KEY = "sk-test-SECRET-123"
MODEL = "test-model"


def exactly(text: str) -> str:
    return re.escape(text)


def starting(text: str) -> str:
    return re.escape(text) + ".*"


@dataclass(frozen=True)
class Wire:
    name: str  # the spec's provider, and the prefix of every error message
    cls: type[Provider]
    fixture: str  # the fake's fixture (tests.support.fixtures)
    url_path: str  # what follows host:port in the base URL the SDK wants
    base_url_env: str  # read by the SDK when base_url is None
    env_url: Callable[[FakeServer], str]  # that variable's value pointing at a fake
    generate: str  # path of the generation POST
    health: str  # path of the health GET
    temperature: str  # dotted paths in the recorded request body
    max_tokens: str
    seed: str | None  # None: the API has no seed
    prompt: dict[str, Any]  # ask("hi", system="be brief") as sent: dotted path -> value
    finish: tuple[str, str]  # finish_reason of a complete reply, of one cut at max_tokens
    retry_after: float | None  # `Retry-After: 7` on a 429 as the provider sees it
    refused: Callable[[str, str], str]  # (base URL tried, transport) → regex the whole refused message matches
    # transport → fault (no reply at all, a reply cut short) → regex of what follows "failed: "
    lost: dict[str, dict[str, str]] = field(default_factory=dict)
    key_env: str | None = None  # None: no key
    key_header: tuple[str, str] | None = None  # (header, prefix) carrying the key, where the contract checks it
    bad_key: tuple[int, type[ProviderError]] = field(default=(401, AuthenticationError))  # how a key is refused
    spec: dict[str, Any] = field(default_factory=dict)  # ModelSpec fields the wire needs besides the URL

    def __str__(self) -> str:
        return self.name


# aiohttp's own words for a refused connection (the SSL part names an SSLContext for google-genai)
AIOHTTP_REFUSED = (
    r"ClientConnectorError: Cannot connect to host 127\.0\.0\.1:\d+ "
    r"ssl:(default|<ssl\.SSLContext object at 0x[0-9a-f]+>) \[Connect call failed \('127\.0\.0\.1', \d+\)\]"
)
STAINLESS_LOST = exactly("APIConnectionError: Connection error.")
AIOHTTP_CUT = (
    r"Response payload is not completed: <ContentLengthError: 400, "
    r"message='Not enough data to satisfy content length header \(received \d+ of \d+ bytes\)\.'>"
)
HTTPX_LOST = {
    "hang_up": exactly("RemoteProtocolError: Server disconnected without sending a response."),
    "cut": r"RemoteProtocolError: peer closed connection without sending complete message body "
           r"\(received \d+ bytes, expected \d+\)",
}
DISCONNECTED = exactly("ServerDisconnectedError: Server disconnected")
CHAT_PROMPT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]  # system first


OLLAMA = Wire(
    name="ollama", cls=OllamaProvider, fixture="ollama_fake", url_path="",
    base_url_env="OLLAMA_HOST", env_url=lambda fake: f"127.0.0.1:{fake.port}",
    generate="/api/chat", health="/api/tags",
    temperature="options.temperature", max_tokens="options.num_predict", seed="options.seed",
    prompt={"messages": CHAT_PROMPT},
    finish=("stop", "length"),
    retry_after=None,  # the ollama SDK does not expose response headers
    # on aiohttp, httpx-aiohttp reports the refusal as a ConnectTimeout, which bypasses the SDK's message
    lost={"aiohttp": {"hang_up": DISCONNECTED, "cut": "ReadError: " + AIOHTTP_CUT}, "default": HTTPX_LOST},
    refused=lambda url, transport: starting(f"ollama: connection to {url} failed: ") + (
        AIOHTTP_REFUSED if transport == "aiohttp" else re.escape("ConnectionError: Failed to connect to Ollama") + ".*"
    ),
)
OPENAI = Wire(
    name="openai", cls=OpenAIProvider, fixture="openai_fake", url_path="/v1",
    base_url_env="OPENAI_BASE_URL", env_url=lambda fake: fake.url,
    generate="/v1/chat/completions", health="/v1/models",
    temperature="temperature", max_tokens="max_completion_tokens", seed="seed",
    prompt={"messages": CHAT_PROMPT},
    finish=("stop", "length"),
    retry_after=7.0,
    # on aiohttp, openai's transport reports the refusal as a timeout: the provider names aiohttp's error
    lost={"aiohttp": {"hang_up": DISCONNECTED, "cut": STAINLESS_LOST},
          "default": {"hang_up": STAINLESS_LOST, "cut": STAINLESS_LOST}},
    refused=lambda url, transport: exactly(f"openai: connection to {url} failed: ") + (
        AIOHTTP_REFUSED if transport == "aiohttp" else exactly("APIConnectionError: Connection error.")
    ),
    key_env="OPENAI_API_KEY", key_header=("authorization", "Bearer "),
)
ANTHROPIC = Wire(
    name="anthropic", cls=AnthropicProvider, fixture="anthropic_fake", url_path="",
    base_url_env="ANTHROPIC_BASE_URL", env_url=lambda fake: fake.url,
    generate="/v1/messages", health=f"/v1/models/{MODEL}",
    temperature="temperature", max_tokens="max_tokens", seed=None,
    prompt={"system": "be brief", "messages": [{"role": "user", "content": "hi"}]},
    finish=("stop", "length"),
    retry_after=7.0,
    lost={t: {"hang_up": STAINLESS_LOST, "cut": STAINLESS_LOST} for t in ("aiohttp", "default")},
    refused=lambda url, transport: exactly(f"anthropic: connection to {url} failed: ") + STAINLESS_LOST,
    key_env="ANTHROPIC_API_KEY",  # its header depends on the SDK version: test_anthropic.py
)
GOOGLE = Wire(
    name="google", cls=GoogleProvider, fixture="google_fake", url_path="",
    base_url_env="GOOGLE_GEMINI_BASE_URL", env_url=lambda fake: fake.url,
    generate=f"/v1/models/{MODEL}:generateContent", health=f"/v1/models/{MODEL}",
    temperature="generationConfig.temperature", max_tokens="generationConfig.maxOutputTokens",
    seed="generationConfig.seed",
    prompt={"systemInstruction.parts": [{"text": "be brief"}],
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    finish=("stop", "length"),
    retry_after=7.0,
    lost={"aiohttp": {"hang_up": DISCONNECTED, "cut": "ClientPayloadError: " + AIOHTTP_CUT}, "default": HTTPX_LOST},
    refused=lambda url, transport: exactly(f"google: connection to {url} failed: ") + (
        AIOHTTP_REFUSED if transport == "aiohttp" else exactly("ConnectError: All connection attempts failed")
    ),
    key_env="GOOGLE_API_KEY", key_header=("x-goog-api-key", ""),
    bad_key=(400, BadRequestError),  # Gemini answers a bad key with 400 INVALID_ARGUMENT
)
WIRES = [OLLAMA, OPENAI, ANTHROPIC, GOOGLE]
# Bedrock speaks through aiobotocore (aiohttp only) and signs with the AWS chain, not a key: the
# transport and key parts of the contract suite are not its own, so it joins the tool, image and
# structured-output tables only (its fixture sets fake AWS credentials).
BEDROCK = Wire(
    name="bedrock", cls=BedrockProvider, fixture="bedrock_wire_fake", url_path="",
    base_url_env="AWS_ENDPOINT_URL_BEDROCK_RUNTIME", env_url=lambda fake: fake.url,
    generate=f"/model/{MODEL}/converse", health=f"/foundation-models/{MODEL}",
    temperature="inferenceConfig.temperature", max_tokens="inferenceConfig.maxTokens", seed=None,
    prompt={"system": [{"text": "be brief"}], "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
    finish=("stop", "length"),
    retry_after=None,
    refused=lambda url, transport: starting(f"bedrock: connection to {url} failed: EndpointConnectionError"),
    spec={"region": "us-east-1"},
)
TOOL_WIRES = [*WIRES, BEDROCK]


# The transports every provider is checked on: aiohttp (the `fast` extra, installed for the tests)
# and the SDK's default, as when aiohttp is absent.
TRANSPORTS = ["aiohttp", "default"]


def without_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the `fast` extra were not installed: every provider falls back to its SDK's default."""
    real = _transport.installed
    monkeypatch.setattr(_transport, "installed", lambda module: module not in AIOHTTP_MODULES and real(module))


AIOHTTP_MODULES = ("aiohttp", "httpx_aiohttp")


def at(body: Any, path: str) -> Any:
    """The value at a dotted path in a recorded request body."""
    for key in path.split("."):
        body = body[key]
    return body


def ask(text: str = "hello there", *, system: str | None = None, **kwargs: Any) -> ProviderRequest:
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=text))
    params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 64, **kwargs}
    return ProviderRequest(messages=messages, model=MODEL, **params)


def make(wire: Wire, base_url: str | None, key: str | None = KEY, **spec: Any) -> Provider:
    """`wire`'s provider for `base_url`, with `key` if the wire takes one; `spec` overrides fields."""
    fields: dict[str, Any] = {"name": wire.name, "provider": wire.name, "model": MODEL, "base_url": base_url,
                              **wire.spec, **spec}
    return wire.cls(ModelSpec(**fields), SecretStr(key) if key and wire.key_env else None)
