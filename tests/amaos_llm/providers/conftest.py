"""`fake` and `provider` for whichever wire a test runs on.

test_contract.py parametrizes `wire` over the four wires; a per-wire file names its own in `WIRE`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from amaos_llm.providers.base import Provider
from tests.amaos_llm.providers.bedrock_fixtures import (  # noqa: F401  (fixtures)
    aws_env,
    bedrock,
    bedrock_fake,
    bedrock_wire_fake,
)
from tests.amaos_llm.providers.wires import Wire, make
from tests.support.fakes import FakeServer


@pytest.fixture
def wire(request: pytest.FixtureRequest) -> Wire:
    """The module's `WIRE` (test_contract.py parametrizes `wire` instead)."""
    return request.module.WIRE


@pytest.fixture
def fake(wire: Wire, request: pytest.FixtureRequest) -> FakeServer:
    """The wire's fake server (the same instance as its named fixture, e.g. `ollama_fake`)."""
    return request.getfixturevalue(wire.fixture)


@pytest.fixture
async def provider(wire: Wire, fake: FakeServer) -> AsyncIterator[Provider]:
    p = make(wire, fake.url)
    yield p
    await p.aclose()


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """pytest's `request`, under a name that does not clash with the tests' own `request(...)` helpers."""
    return request
