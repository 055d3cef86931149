"""Bedrock through `LLMManager`: one model in two regions (each region a target, paired with a fake
by position), both retry strategies, exact usage and cost on the result."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from amaos_llm import LLMConfig, LLMManager
from tests.amaos_llm.providers.bedrock_fixtures import MODEL
from tests.support.bedrock_fake import BedrockFake

pytestmark = pytest.mark.anyio


async def no_sleep(seconds: float) -> None:
    pass


def manager(models: list[dict[str, Any]], **routing: Any) -> LLMManager:
    config = LLMConfig.model_validate({"models": models, "routing": routing,
                                       "defaults": {"retry_jitter": 0, "max_retries": 0}})
    return LLMManager(config, sleep=no_sleep)


def two_regions(first: BedrockFake, second: BedrockFake, **extra: Any) -> dict[str, Any]:
    return {"name": "claude", "provider": "bedrock", "model": MODEL, "regions": ["us-east-1", "us-west-2"],
            "base_url": [first.url, second.url], **extra}


def trail(result: Any) -> list[tuple[str, str, str | None]]:
    return [(a.model_name, a.outcome, a.endpoint) for a in result.attempts]


def signed_region(fake: BedrockFake) -> str:
    return fake.requests[0].headers["authorization"].split("/")[2]


async def test_a_failing_region_is_answered_by_the_next_one(aws_env: None) -> None:
    with BedrockFake() as east, BedrockFake() as west:
        east.fail(500)
        async with manager([two_regions(east, west)]) as m:
            result = await m.complete("hi")
        assert (result.content, result.model_name, result.provider) == ("echo: hi", "claude", "bedrock")
        assert trail(result) == [("claude", "error", east.url), ("claude", "success", west.url)]
        assert result.attempts[0].error == "ServerError: bedrock: InternalServerException: fake failure 500"
        assert (signed_region(east), signed_region(west)) == ("us-east-1", "us-west-2")


async def test_usage_and_cost_on_the_result_are_the_servers_counts(aws_env: None) -> None:
    with BedrockFake() as east, BedrockFake() as west:
        east.cache_read = 10
        spec = two_regions(east, west, cost_per_1k_input="3", cost_per_1k_output="15")
        async with manager([spec]) as m:
            result = await m.complete("one two three")
        assert (result.usage.input_tokens, result.usage.output_tokens) == (3 + 10, 4)
        assert result.cost == Decimal(13 * 3 + 4 * 15) / 1000
        assert result.finish_reason == "stop"


async def test_model_first_tries_every_region_before_the_next_model(aws_env: None) -> None:
    with BedrockFake() as east, BedrockFake() as west, BedrockFake() as other:
        east.fail(500)
        models = [two_regions(east, west, priority=2),
                  {"name": "other", "provider": "bedrock", "model": MODEL, "region": "eu-west-1",
                   "base_url": other.url, "priority": 1}]
        async with manager(models, retry_strategy="model_first") as m:
            result = await m.complete("hi")
        assert trail(result) == [("claude", "error", east.url), ("claude", "success", west.url)]
        assert other.requests == []


async def test_endpoint_first_tries_each_models_first_region_then_the_second(aws_env: None) -> None:
    with BedrockFake() as east, BedrockFake() as west, BedrockFake() as other:
        east.fail(500)
        other.fail(400, code="ValidationException")
        models = [two_regions(east, west, priority=2),
                  {"name": "other", "provider": "bedrock", "model": MODEL, "region": "eu-west-1",
                   "base_url": other.url, "priority": 1}]
        async with manager(models, retry_strategy="endpoint_first") as m:
            result = await m.complete("hi")
        assert trail(result) == [("claude", "error", east.url), ("other", "error", other.url),
                                 ("claude", "success", west.url)]


async def test_without_base_urls_each_region_is_named_by_its_public_endpoint() -> None:
    spec = LLMConfig.model_validate({"models": [{"name": "claude", "provider": "bedrock", "model": MODEL,
                                                 "regions": ["us-east-1", "us-west-2"]}]}).models[0]
    assert [(url, s.region) for url, s in spec.endpoint_specs()] == [
        ("https://bedrock-runtime.us-east-1.amazonaws.com", "us-east-1"),
        ("https://bedrock-runtime.us-west-2.amazonaws.com", "us-west-2"),
    ]
    assert (spec.is_local, spec.key_required) == (False, False)


async def test_health_asks_each_regions_control_plane_and_generates_nothing(aws_env: None) -> None:
    with BedrockFake() as east, BedrockFake() as west:
        east.fail(503)
        async with manager([two_regions(east, west)]) as m:
            assert await m.health_check_all() == {"claude": True}  # one region answering is enough
            endpoints = m.get_model_info("claude")["endpoints"]
        assert [(r.method, r.path) for r in east.requests + west.requests] == [
            ("GET", "/foundation-models/anthropic.claude-test-v1%3A0")] * 2
        assert [(signed_region(east), signed_region(west))] == [("us-east-1", "us-west-2")]
        assert [e["url"] for e in endpoints] == [east.url, west.url]
