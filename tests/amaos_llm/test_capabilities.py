"""The per-model capability rule: what a call needs, and why a model cannot give it."""

from __future__ import annotations

from typing import Any

import pytest

from amaos_llm.capabilities import Needs, call_needs, capability_skip
from amaos_llm.config import ModelSpec
from amaos_llm.tools import as_tools
from amaos_llm.types import Message

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
SCHEMA = {"type": "object", "properties": {}}


def spec(provider: str = "openai", **fields: Any) -> ModelSpec:
    return ModelSpec(name="m", provider=provider, model="x", **fields)


def add(a: int) -> int:
    return a


def test_a_plain_text_call_needs_nothing() -> None:
    assert call_needs([Message(role="user", content="hi")], (), "auto", None) is None


def test_needs_are_read_from_tools_choice_schema_images_and_history() -> None:
    image = Message(role="user", content=[{"type": "image", "data": PNG}, {"type": "image", "url": "https://x/y.png"}])
    history = [Message(role="assistant", tool_calls=[{"id": "a", "name": "add"}]),
               Message(role="tool", tool_call_id="a", content="1")]
    assert call_needs([image], as_tools([add]), "add", SCHEMA) == Needs(
        tools=True, forced_tool=True, structured_output=True, image_bytes=len(PNG), url_images=True)
    assert call_needs(history, (), "auto", None) == Needs(tools=True)
    assert call_needs([Message(role="user", content="x")], as_tools([add]), "none", None) is None


@pytest.mark.parametrize(("model", "needs", "reason"), [
    (spec(capabilities=["text"]), Needs(tools=True), "capabilities [text] lack tools"),
    (spec(capabilities=["text", "tools"]), Needs(tools=True, structured_output=True, image_bytes=1),
     "capabilities [text, tools] lack vision, structured_output"),
    (spec("embedded"), Needs(image_bytes=1), "capabilities [text, tools, structured_output] lack vision"),
    (spec("bedrock", region="us-east-1"), Needs(url_images=True),
     "bedrock cannot fetch image URLs; send the image data inline"),
    (spec("bedrock", region="us-east-1"), Needs(image_bytes=3_932_161),
     "an image of 3932161 bytes is over its max_image_bytes (3932160)"),
    (spec("google", api_key="k"), Needs(url_images=True), "google cannot fetch image URLs; send the image data inline"),
    (spec("anthropic"), Needs(image_bytes=5 * 1024 * 1024 + 1),
     "an image of 5242881 bytes is over its max_image_bytes (5242880)"),
    (spec("ollama"), Needs(tools=True, forced_tool=True), "ollama cannot force a tool call (tool_choice)"),
])
def test_a_model_that_cannot_serve_the_call_is_skipped_with_the_reason(
    model: ModelSpec, needs: Needs, reason: str
) -> None:
    assert capability_skip(model, needs) == reason


@pytest.mark.parametrize(("model", "needs"), [
    (spec(), Needs(tools=True, forced_tool=True, structured_output=True, image_bytes=20 * 1024 * 1024,
                   url_images=True)),
    (spec("embedded", mmproj_path="/models/mmproj.gguf"), Needs(image_bytes=1)),
    (spec("anthropic", max_image_bytes=10 * 1024 * 1024), Needs(image_bytes=6 * 1024 * 1024)),
    (spec("ollama"), Needs(tools=True, image_bytes=100 * 1024 * 1024)),
    (spec("bedrock", region="us-east-1"), Needs(tools=True, forced_tool=True, structured_output=True,
                                                image_bytes=3_932_160)),
])
def test_a_model_that_can_serve_the_call_is_not_skipped(model: ModelSpec, needs: Needs) -> None:
    assert capability_skip(model, needs) is None


def test_capabilities_and_image_limits_load_from_yaml_fields() -> None:
    model = ModelSpec.model_validate({"name": "v", "provider": "embedded", "capabilities": ["text", "vision"],
                                      "mmproj_path": "/m.gguf", "max_image_bytes": 1000})
    assert (model.capabilities, model.mmproj_path, model.max_image_bytes) == (["text", "vision"], "/m.gguf", 1000)
    with pytest.raises(ValueError, match="capabilities"):
        ModelSpec.model_validate({"name": "v", "provider": "openai", "capabilities": ["telepathy"]})
