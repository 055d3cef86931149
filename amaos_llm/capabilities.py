"""What a call needs from a model (tools, images, a schema), and whether a model can give it.

`call_needs` reads a call once, before routing: None for a plain text call (the common case, which
then costs the attempt loop one `is None` test). `capability_skip(spec, needs)` is a pure rule: the
reason a model must be passed over, or None. A model is skipped rather than sent a request it would
fail on or, worse, quietly ignore (a model without vision answering as if no image were there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amaos_llm.config import ModelSpec
from amaos_llm.types import Message

ALL_CAPABILITIES = ("text", "tools", "vision", "structured_output")
# The embedded model reads images only through a vision projector (`mmproj_path`).
EMBEDDED_WITHOUT_MMPROJ = ("text", "tools", "structured_output")
# the others need the bytes inline (azure_openai is OpenAI's API, URLs included)
URL_FETCHING_PROVIDERS = frozenset({"openai", "azure_openai", "anthropic"})
MB = 1024 * 1024
# the APIs' own; Bedrock's Converse takes images of up to 3.75 MB (its service model's `Message` doc)
MAX_IMAGE_BYTES = {"anthropic": 5 * MB, "openai": 20 * MB, "azure_openai": 20 * MB, "google": 20 * MB,
                   "bedrock": 3 * MB + 3 * MB // 4}
FORCING = ("auto", "none")  # tool_choice values that do not force a call


@dataclass(frozen=True, slots=True)
class Needs:
    """What one call asks of a model."""

    tools: bool = False  # tools offered (not with tool_choice "none"), or tool turns in the history
    forced_tool: bool = False  # tool_choice "required" or a tool's name
    structured_output: bool = False
    image_bytes: int = 0  # the largest inline image, 0 without images
    url_images: bool = False

    @property
    def vision(self) -> bool:
        return self.image_bytes > 0 or self.url_images

    @property
    def capabilities(self) -> tuple[str, ...]:
        wanted = [("tools", self.tools), ("vision", self.vision), ("structured_output", self.structured_output)]
        return tuple(name for name, needed in wanted if needed)


def call_needs(
    messages: Sequence[Message], tools: Sequence[Any], tool_choice: str, schema: dict[str, Any] | None
) -> Needs | None:
    """What the call asks beyond text, or None when it asks nothing more."""
    for m in messages:  # on every call: a plain chat is told apart in one cheap pass
        if m.tool_calls or m.tool_call_id is not None or type(m.content) is not str:
            break
    else:
        if not tools and schema is None:
            return None
    tool_turns = False
    largest = 0
    url = False
    for m in messages:
        if m.tool_calls or m.tool_call_id is not None:
            tool_turns = True
        if type(m.content) is not str:
            for image in m.images:
                if image.url is not None:
                    url = True
                elif image.data is not None:
                    largest = max(largest, len(image.data))
    offered = bool(tools) and tool_choice != "none"
    if not (tool_turns or offered or largest or url or schema is not None):
        return None
    return Needs(tools=tool_turns or offered, forced_tool=offered and tool_choice not in FORCING,
                 structured_output=schema is not None, image_bytes=largest, url_images=url)


def capabilities_of(spec: ModelSpec) -> tuple[str, ...]:
    if spec.capabilities is not None:
        return tuple(spec.capabilities)
    if spec.provider == "embedded" and spec.mmproj_path is None:
        return EMBEDDED_WITHOUT_MMPROJ
    return ALL_CAPABILITIES


def max_image_bytes(spec: ModelSpec) -> int | None:
    return spec.max_image_bytes if spec.max_image_bytes is not None else MAX_IMAGE_BYTES.get(spec.provider)


def capability_skip(spec: ModelSpec, needs: Needs) -> str | None:
    """Why `spec` cannot take a call with these needs, or None when it can."""
    has = capabilities_of(spec)
    lacking = [c for c in needs.capabilities if c not in has]
    if lacking:
        return f"capabilities [{', '.join(has)}] lack {', '.join(lacking)}"
    if needs.url_images and spec.provider not in URL_FETCHING_PROVIDERS:
        return f"{spec.provider} cannot fetch image URLs; send the image data inline"
    limit = max_image_bytes(spec)
    if limit is not None and needs.image_bytes > limit:
        return f"an image of {needs.image_bytes} bytes is over its max_image_bytes ({limit})"
    if needs.forced_tool and spec.provider == "ollama":
        return "ollama cannot force a tool call (tool_choice)"
    return None
