"""Provider contract and registry. One module per provider; SDKs are imported on first use."""

from amaos_llm.providers.base import Provider, ProviderChunk, ProviderReply, ProviderRequest, StreamUsage
from amaos_llm.providers.registry import (
    ProviderInfo,
    known_providers,
    provider_class,
    provider_info,
)

__all__ = [
    "Provider",
    "ProviderChunk",
    "ProviderInfo",
    "ProviderReply",
    "ProviderRequest",
    "StreamUsage",
    "known_providers",
    "provider_class",
    "provider_info",
]
