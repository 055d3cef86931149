"""Which provider names exist and where their code lives.

Built-ins are listed by module path so that nothing (and no SDK) is imported until a model of
that provider is first called. Third-party providers register under the `amaos.providers`
entry-point group, naming a `Provider` subclass.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from amaos_llm.errors import ConfigError

if TYPE_CHECKING:
    from amaos_llm.providers.base import Provider

ENTRY_POINT_GROUP = "amaos.providers"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    target: str  # "module:Class"
    local: bool | None  # None: local exactly when base_url is a loopback address
    key_env: str | None  # env var read when the model names none
    key_required: bool


_BUILTINS = {
    info.name: info
    for info in (
        ProviderInfo("ollama", "amaos_llm.providers.ollama:OllamaProvider", True, None, False),
        ProviderInfo("embedded", "amaos_llm.providers.embedded:EmbeddedProvider", True, None, False),
        ProviderInfo("callable", "amaos_llm.providers.callable:CallableProvider", True, None, False),
        ProviderInfo("openai", "amaos_llm.providers.openai:OpenAIProvider", False, "OPENAI_API_KEY", True),
        ProviderInfo(
            "openai_compatible", "amaos_llm.providers.openai:OpenAIProvider", None, None, False
        ),
        ProviderInfo("anthropic", "amaos_llm.providers.anthropic:AnthropicProvider", False, "ANTHROPIC_API_KEY", True),
        ProviderInfo("google", "amaos_llm.providers.google:GoogleProvider", False, "GOOGLE_API_KEY", True),
        # credentials from the AWS chain (environment, profile, instance role): no key variable of ours
        ProviderInfo("bedrock", "amaos_llm.providers.bedrock:BedrockProvider", False, None, False),
        ProviderInfo("azure_openai", "amaos_llm.providers.azure_openai:AzureOpenAIProvider", False,
                     "AZURE_OPENAI_API_KEY", True),
    )
}


@cache
def _plugins() -> dict[str, ProviderInfo]:
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTINS:
            continue  # a plugin cannot shadow a built-in
        cls = ep.load()
        found[ep.name] = ProviderInfo(
            ep.name,
            f"{cls.__module__}:{cls.__qualname__}",
            getattr(cls, "local", False),
            getattr(cls, "key_env", None),
            getattr(cls, "key_required", False),
        )
    return found


def known_providers() -> list[str]:
    return sorted({*_BUILTINS, *_plugins()})


def provider_info(name: str) -> ProviderInfo:
    info = _BUILTINS.get(name)
    if info is None:
        info = _plugins().get(name)  # entry points are read only for a name that is not built in
    if info is None:
        raise ConfigError(f"unknown provider {name!r}; known providers: {', '.join(known_providers())}")
    return info


def provider_class(name: str) -> type[Provider]:
    module, _, attr = provider_info(name).target.partition(":")
    cls: type[Provider] = getattr(import_module(module), attr)
    return cls


def is_loopback_url(url: str | None) -> bool:
    if not url:
        return False
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
