"""Importing a provider module must not import its SDK: `import amaos_llm` stays fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("module", "sdk"),
    [
        ("amaos_llm.providers.ollama", "ollama"),
        ("amaos_llm.providers.openai", "openai"),
        ("amaos_llm.providers.anthropic", "anthropic"),
        ("amaos_llm.providers.google", "google.genai"),
        ("amaos_llm.providers.bedrock", "aiobotocore"),
        ("amaos_llm.providers.bedrock", "botocore"),
        ("amaos_llm.providers.azure_openai", "openai"),
    ],
)
def test_importing_the_provider_module_does_not_import_its_sdk(module: str, sdk: str) -> None:
    code = f"import sys, {module}; print({sdk!r} in sys.modules, 'httpx2' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["False", "False", "False"]
