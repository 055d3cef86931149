"""local_only keeps everything on this machine: the shipped config, with cloud keys set, under a
socket guard that fails any connection leaving loopback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from amaos_llm import LLMManager

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]


async def test_the_guard_blocks_a_real_egress_attempt(no_egress: list[Any]) -> None:
    with pytest.raises(OSError, match="egress blocked"):
        await anyio.to_thread.run_sync(socket.create_connection, ("192.0.2.1", 443))


async def test_local_only_answers_offline_with_cloud_keys_present(
    no_egress: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "DASHSCOPE_API_KEY"):
        monkeypatch.setenv(var, "sk-would-be-used-if-allowed")
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")  # nothing listens: the local Ollama is down
    async with LLMManager.from_yaml(REPO / "config" / "model_priority.yaml", local_only=True) as manager:
        result = await manager.complete("Say hello.", temperature=0.0, max_tokens=8)
        built = {n for n, s in manager.get_provider_status().items() if s["client"] != "unbuilt"}
    assert result.model_name == "smollm2-embedded" and result.cost == 0
    assert no_egress == []
    assert built <= {"llama3-local", "smollm2-embedded"}  # no cloud SDK client was ever constructed
