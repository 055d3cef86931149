"""Pytest fixtures: one fresh fake server per test, stopped afterwards.

Enabled for the whole suite by `pytest_plugins = ["tests.support.fixtures"]` in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakes import AnthropicFake, GoogleFake, OllamaFake, OpenAIFake, closed_port_url


@pytest.fixture
def ollama_fake() -> Iterator[OllamaFake]:
    with OllamaFake() as fake:
        yield fake


@pytest.fixture
def openai_fake() -> Iterator[OpenAIFake]:
    with OpenAIFake() as fake:
        yield fake


@pytest.fixture
def anthropic_fake() -> Iterator[AnthropicFake]:
    with AnthropicFake() as fake:
        yield fake


@pytest.fixture
def google_fake() -> Iterator[GoogleFake]:
    with GoogleFake() as fake:
        yield fake


@pytest.fixture
def closed_port() -> str:
    """A base URL on 127.0.0.1 where connecting is refused."""
    return closed_port_url()
