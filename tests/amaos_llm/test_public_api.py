"""The public surface is a contract: pinned names, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys

import amaos_llm
import amaos_llm.providers


def test_amaos_llm_exports_exactly_the_documented_names() -> None:
    assert sorted(amaos_llm.__all__) == [
        "AllModelsFailed", "Attempt", "AuthenticationError", "BadRequestError", "BatchRequest", "BatchResult",
        "Budget", "BudgetExceeded", "Chunk", "ChunkStream", "ConfigError", "ContextWindowExceeded",
        "DeadlineExceeded", "Defaults", "Estimate", "ImagePart", "InvalidRequest", "LLMConfig", "LLMError",
        "LLMManager", "LLMResult", "Ledger", "MemoryStore", "Message", "ModelLoadError", "ModelNotFound",
        "ModelSpec", "ProviderConnectionError", "ProviderError", "ProviderTimeout", "RateLimitError", "Reservation",
        "RoutingConfig", "ServerError", "StateStore", "StateStoreError", "StreamCallbacks", "StreamInterrupted",
        "TextPart", "Tool", "ToolCall", "ToolLoopLimit", "ToolRun", "Usage", "get_llm_manager", "set_llm_manager",
    ]
    assert all(hasattr(amaos_llm, name) for name in amaos_llm.__all__)


def test_providers_package_exports_the_contract_and_registry() -> None:
    assert sorted(amaos_llm.providers.__all__) == [
        "Provider", "ProviderChunk", "ProviderInfo", "ProviderReply", "ProviderRequest", "StreamUsage",
        "known_providers", "provider_class", "provider_info",
    ]


def test_import_loads_no_sdk_and_no_price_table() -> None:
    code = (
        "import sys, json, amaos_llm; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'openai','anthropic','google','ollama','httpx','httpx2','genai_prices','xllamacpp','networkx'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
