"""Fixtures for the Bedrock tests: fake AWS credentials in a sealed environment, the fake, a provider.

Import them into a test module (`from tests.amaos_llm.providers.bedrock_fixtures import ...`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.providers.bedrock import BedrockProvider
from amaos_llm.types import Message
from tests.support.bedrock_fake import BedrockFake

ACCESS_KEY = "AKIAFAKEFAKEFAKE1234"
SECRET_KEY = "fake/SECRET/key+never+shown+0123456789"
SESSION_TOKEN = "FAKE-SESSION-TOKEN-never-shown-987654"
MODEL = "anthropic.claude-test-v1:0"
PROFILE = "us.anthropic.claude-test-v1:0"
WIRE_MODEL = "test-model"  # wires.MODEL, the id every wire's table tests ask for
CREDENTIALS = (SECRET_KEY, SESSION_TOKEN)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials, and nothing else from the machine: no profile files, no instance metadata."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL_BEDROCK", "AWS_BEARER_TOKEN_BEDROCK",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


@pytest.fixture
def bedrock_fake() -> Iterator[BedrockFake]:
    with BedrockFake() as fake:
        yield fake


@pytest.fixture
def bedrock_wire_fake(aws_env: None, bedrock_fake: BedrockFake) -> BedrockFake:
    """The fake as the wire table (wires.BEDROCK) uses it: serving its `test-model`, with fake credentials set."""
    bedrock_fake.models.append(WIRE_MODEL)
    return bedrock_fake


def bedrock_spec(url: str | None, model: str = MODEL, **extra: Any) -> ModelSpec:
    return ModelSpec(name="b", provider="bedrock", model=model, base_url=url, **{"region": "us-east-1", **extra})


@pytest.fixture
async def bedrock(aws_env: None, bedrock_fake: BedrockFake) -> AsyncIterator[BedrockProvider]:
    p = BedrockProvider(bedrock_spec(bedrock_fake.url))
    yield p
    await p.aclose()


def ask(text: str = "hi", *, system: str | None = None, max_tokens: int = 64, model: str = MODEL,
        **options: Any) -> ProviderRequest:
    messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=text)]
    return ProviderRequest(messages=messages, model=model, temperature=0.0, max_tokens=max_tokens, options=options)
