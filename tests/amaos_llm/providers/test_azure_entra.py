"""Azure OpenAI with `auth: entra_id`: a Microsoft Entra ID bearer token instead of the `api-key`,
from $AZURE_OPENAI_AD_TOKEN or fetched by azure-identity's real `DefaultAzureCredential` from a
loopback managed-identity endpoint (App Service's, which azure-identity allows over http), against
an Azure fake that refuses keys (`disableLocalAuth`). The token never shows anywhere of ours."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager
from amaos_llm.config import ModelSpec
from amaos_llm.errors import AuthenticationError, ConfigError
from amaos_llm.providers.azure_openai import AzureOpenAIProvider
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.types import Message
from tests.support.azure_fake import AzureIdentityFake, AzureOpenAIFake

pytestmark = pytest.mark.anyio
VERSION = "2024-10-21"
STATIC_TOKEN = "static-ENTRA-token-never-shown-42424242"
KEY = "azure-key-that-must-not-be-sent-1234"
MISSING = (r"azure_openai: auth: entra_id needs a token: pip install 'amaos-llm\[azure\]' \(azure-identity's "
           r"DefaultAzureCredential\) or set \$AZURE_OPENAI_AD_TOKEN")


@pytest.fixture
def sealed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Azure identity from this machine: every variable azure-identity or the SDK reads is unset, and
    a key is set that must not be sent."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.azure token cache or CLI profile
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)


@pytest.fixture
def azure_fake() -> Iterator[AzureOpenAIFake]:
    with AzureOpenAIFake() as fake:
        fake.local_auth = False
        yield fake


@pytest.fixture
def identity(sealed: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureIdentityFake]:
    """The managed-identity endpoint DefaultAzureCredential finds through $IDENTITY_ENDPOINT."""
    with AzureIdentityFake() as fake:
        monkeypatch.setenv("IDENTITY_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", fake.header)
        yield fake


@pytest.fixture
def no_azure_identity(sealed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the `azure` extra were not installed."""
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)


def entra_spec(url: str, **extra: Any) -> ModelSpec:
    return ModelSpec(name="gpt", provider="azure_openai", model="my-gpt", base_url=url, api_version=VERSION,
                     **{"auth": "entra_id", **extra})


def ask(text: str = "one two three") -> ProviderRequest:
    return ProviderRequest(messages=[Message(role="user", content=text)], model="my-gpt", temperature=0.0,
                           max_tokens=64)


def auth_headers(fake: AzureOpenAIFake) -> list[tuple[str | None, str | None]]:
    return [(r.headers.get("authorization"), r.headers.get("api-key")) for r in fake.requests]


# --- where the token comes from ------------------------------------------------------------------
async def test_a_token_from_azure_openai_ad_token_is_sent_as_a_bearer_and_no_key(
    sealed: None, azure_fake: AzureOpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", STATIC_TOKEN)
    azure_fake.entra_tokens = {STATIC_TOKEN}
    p = AzureOpenAIProvider(entra_spec(azure_fake.url))
    try:
        reply = await p.complete(ask())
        streamed = "".join([c.text async for c in p.stream(ask())])
    finally:
        await p.aclose()
    assert (reply.content, streamed) == ("echo: one two three", "echo: one two three")
    assert auth_headers(azure_fake) == [(f"Bearer {STATIC_TOKEN}", None)] * 2


async def test_default_azure_credential_gets_a_token_from_the_identity_endpoint_once(
    identity: AzureIdentityFake, azure_fake: AzureOpenAIFake
) -> None:
    azure_fake.entra_tokens = {identity.token}
    p = AzureOpenAIProvider(entra_spec(azure_fake.url))
    try:
        first = await p.complete(ask())
        second = await p.complete(ask("four five"))
        streamed = "".join([c.text async for c in p.stream(ask())])
    finally:
        await p.aclose()
    assert (first.content, second.content, streamed) == ("echo: one two three", "echo: four five",
                                                         "echo: one two three")
    assert auth_headers(azure_fake) == [(f"Bearer {identity.token}", None)] * 3
    # one token, for the Cognitive Services resource, asked with the managed identity's secret header
    assert [(r.query["resource"], r.headers["x-identity-header"]) for r in identity.requests] == [
        ("https://cognitiveservices.azure.com", identity.header)]


async def test_a_key_is_refused_by_a_resource_without_local_auth(
    sealed: None, azure_fake: AzureOpenAIFake
) -> None:
    from pydantic import SecretStr

    p = AzureOpenAIProvider(entra_spec(azure_fake.url, auth=None), SecretStr(KEY))
    try:
        with pytest.raises(AuthenticationError, match=r"^azure_openai: HTTP 403: Key based authentication is "):
            await p.complete(ask())
    finally:
        await p.aclose()
    assert auth_headers(azure_fake) == [(None, KEY)]


async def test_without_a_token_source_the_error_names_the_extra_and_the_variable(
    no_azure_identity: None, azure_fake: AzureOpenAIFake
) -> None:
    p = AzureOpenAIProvider(entra_spec(azure_fake.url))
    try:
        with pytest.raises(AuthenticationError, match=f"^{MISSING}$"):
            await p.complete(ask())
        assert await p.has_credentials() is False
    finally:
        await p.aclose()
    assert azure_fake.requests == []


async def test_a_refused_identity_is_an_authentication_error_and_nothing_is_sent(
    identity: AzureIdentityFake, azure_fake: AzureOpenAIFake
) -> None:
    identity.header = "another-secret"  # the managed identity refuses ours
    p = AzureOpenAIProvider(entra_spec(azure_fake.url))
    try:
        with pytest.raises(AuthenticationError, match=r"^azure_openai: no Entra ID token \(pip install "):
            await p.complete(ask())
    finally:
        await p.aclose()
    assert azure_fake.requests == [] and len(identity.requests) >= 1


async def test_a_token_the_resource_refuses_is_an_authentication_error(
    identity: AzureIdentityFake, azure_fake: AzureOpenAIFake
) -> None:
    p = AzureOpenAIProvider(entra_spec(azure_fake.url))  # azure_fake.entra_tokens is empty
    try:
        with pytest.raises(AuthenticationError, match=r"^azure_openai: HTTP 401: Unauthorized\. Access token is "):
            await p.complete(ask())
    finally:
        await p.aclose()


# --- never shown ---------------------------------------------------------------------------------
async def test_the_token_appears_in_no_log_error_repr_result_or_stats(
    identity: AzureIdentityFake, azure_fake: AzureOpenAIFake, caplog: pytest.LogCaptureFixture
) -> None:
    azure_fake.entra_tokens = {identity.token}
    config = LLMConfig.model_validate({"defaults": {"max_retries": 0}, "models": [{
        "name": "gpt", "provider": "azure_openai", "model": "my-gpt", "base_url": azure_fake.url,
        "api_version": VERSION, "auth": "entra_id", "cost_per_1k_input": "2.5", "cost_per_1k_output": "10"}]})
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with LLMManager(config) as m:
            result = await m.complete("one two three")
            azure_fake.fail(500, message=f"the server echoed Bearer {identity.token}")
            with pytest.raises(AllModelsFailed) as failed:
                await m.complete("again")
            shown += [repr(m), str(m.get_stats()), str(m.get_provider_status()), str(m.get_model_info("gpt")),
                      result.model_dump_json(), str(failed.value), repr(failed.value.attempts)]
            azure_fake.recover()
            report = await m.validate_configuration()
    shown += [report.model_dump_json(), *(r.getMessage() for r in caplog.records)]
    assert (result.content, result.cost, [a.key_env for a in result.attempts]) == (
        "echo: one two three", Decimal(3 * 25 + 4 * 100) / 10_000, [None])
    assert "***" in str(failed.value)  # the echoed token was hidden, not dropped with its message
    assert [s for s in shown if identity.token in s] == []
    assert report.models["gpt"].credentials is True and report.ok is True


# --- validate_configuration ----------------------------------------------------------------------
async def test_validate_configuration_finds_the_entra_token_source_or_names_what_to_install(
    sealed: None, azure_fake: AzureOpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = {"name": "gpt", "provider": "azure_openai", "model": "my-gpt", "base_url": azure_fake.url,
             "api_version": VERSION, "auth": "entra_id", "cost_per_1k_input": "1", "cost_per_1k_output": "1"}
    config = LLMConfig.model_validate({"models": [model]})
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)
    async with LLMManager(config) as m:
        missing = (await m.validate_configuration()).models["gpt"]
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", STATIC_TOKEN)
    azure_fake.entra_tokens = {STATIC_TOKEN}
    async with LLMManager(config) as m:
        found = (await m.validate_configuration()).models["gpt"]
    assert (missing.credentials, missing.reachable) == (False, None)
    assert missing.problems == ["no credentials: auth: entra_id found no Entra ID token; pip install "
                                "'amaos-llm[azure]' (azure-identity's DefaultAzureCredential) or set "
                                "$AZURE_OPENAI_AD_TOKEN"]
    assert (found.credentials, found.reachable, found.problems) == (True, True, [])
    assert [r.method for r in azure_fake.requests] == ["GET"]  # the health check only, with the token
    assert auth_headers(azure_fake) == [(f"Bearer {STATIC_TOKEN}", None)]


# --- the YAML ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("extra", "line", "field", "message"), [
    ("    auth: entra\n", 6, "models[0].auth", "Input should be 'api_key' or 'entra_id'"),
    ("    auth: entra_id\n    api_key_env: AZURE_OPENAI_API_KEY\n", 7, "models[0].api_key_env",
     "auth: entra_id sends a bearer token, not a key: remove the key"),
])
def test_a_bad_auth_setting_names_file_line_and_field(
    tmp_path: Path, extra: str, line: int, field: str, message: str
) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - name: gpt\n    provider: azure_openai\n    base_url: https://r.openai.azure.com\n"
                    f"    api_version: '{VERSION}'\n{extra}")
    with pytest.raises(ConfigError) as caught:
        LLMConfig.from_yaml(path)
    assert str(caught.value) == f"{path}:{line}: {field}: {message}"


def test_entra_id_is_for_azure_openai_only(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - name: gpt\n    provider: openai\n    auth: entra_id\n")
    with pytest.raises(ConfigError) as caught:
        LLMConfig.from_yaml(path)
    assert str(caught.value) == f"{path}:4: models[0].auth: entra_id is for azure_openai, not openai"


def test_an_entra_model_needs_no_key_variable() -> None:
    spec = entra_spec("https://r.openai.azure.com")
    assert (spec.api_key_env, spec.key_envs, spec.key_required) == (None, (), False)
