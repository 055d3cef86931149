"""The Gemini shapes: `contents`, the tool and structured-output fields of `GenerateContentConfig`,
and replies read back into text, tool calls and usage.

Assistant turns have role `model`; a turn's tool results travel together in the next `user` content,
each a `function_response` named after its call (Gemini matches them by name), with
`{"output": ...}` or `{"error": ...}`. A call's `thought_signature` comes back in
`provider_data["google"]`; a call Gemini did not make (another provider's, in a fallback) carries
the documented placeholder that tells Gemini to skip the signature check.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from amaos_llm.content import ImagePart, TextPart
from amaos_llm.errors import BadRequestError
from amaos_llm.history import for_wire
from amaos_llm.types import ToolCall

if TYPE_CHECKING:
    from amaos_llm.providers.base import ProviderRequest
    from amaos_llm.types import Message

SKIP_SIGNATURE = b"skip_thought_signature_validator"
MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def wire_contents(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the parts of the user content collecting tool results
    for m in for_wire(messages, "google"):
        if m.role == "system":
            continue
        if m.role == "tool" and m.tool_call_id is not None:
            answer = {"error" if m.is_error else "output": m.text}
            part = {"function_response": {"name": m.name or "", "response": answer}}
            if results is None:
                results = []
                out.append({"role": "user", "parts": results})
            results.append(part)
            continue
        results = None
        role = "model" if m.role == "assistant" else "user"
        parts = [_part(p) for p in m.content] if type(m.content) is not str else [{"text": m.content}]
        if m.tool_calls:
            parts = ([{"text": m.text}] if m.text else []) + [_call(c, i == 0) for i, c in enumerate(m.tool_calls)]
        out.append({"role": role, "parts": parts})
    return out


def _part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.url is not None:
        raise BadRequestError("google: images must be inline data; Gemini fetches no URLs")
    return {"inline_data": {"mime_type": part.media_type, "data": part.data}}


def _call(call: ToolCall, first: bool) -> dict[str, Any]:
    part: dict[str, Any] = {"function_call": {"name": call.name, "args": call.arguments}}
    signature = ((call.provider_data or {}).get("google") or {}).get("thought_signature")
    if signature:
        part["thought_signature"] = base64.b64decode(signature)
    elif first:  # Gemini checks the signature of a turn's first call only
        part["thought_signature"] = SKIP_SIGNATURE
    return part


def config_fields(request: ProviderRequest) -> dict[str, Any]:
    """`GenerateContentConfig` fields for tools, tool choice and structured output."""
    fields: dict[str, Any] = {}
    if request.tools:
        declarations = [{"name": t.name, "description": t.description, "parameters_json_schema": t.parameters}
                        for t in request.tools]
        fields["tools"] = [{"function_declarations": declarations}]
        choice = request.tool_choice
        mode: dict[str, Any] = {"mode": MODES.get(choice, "ANY")}
        if choice not in MODES:
            mode["allowed_function_names"] = [choice]
        fields["tool_config"] = {"function_calling_config": mode}
    if request.response_format is not None:
        fields["response_mime_type"] = "application/json"
        fields["response_json_schema"] = request.response_format
    return fields


def read_parts(parts: Sequence[Any]) -> tuple[str, list[ToolCall]]:
    """The text (thought parts dropped) and the whole tool calls of a reply's parts."""
    texts, calls = [], []
    for p in parts:
        if p.function_call is not None:
            fields: dict[str, Any] = {"name": p.function_call.name or "", "arguments": p.function_call.args or {}}
            if p.function_call.id:
                fields["id"] = p.function_call.id
            if p.thought_signature:
                fields["provider_data"] = {"google": {
                    "thought_signature": base64.b64encode(p.thought_signature).decode("ascii")}}
            calls.append(ToolCall(**fields))
        elif p.text and not p.thought:
            texts.append(p.text)
    return "".join(texts), calls


def usage_counts(usage: Any) -> tuple[int, int, int]:
    """(input, output, cache read): the prompt count includes cached tokens; thinking is billed as output."""
    if usage is None:
        return 0, 0, 0
    output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    return usage.prompt_token_count or 0, output, usage.cached_content_token_count or 0
