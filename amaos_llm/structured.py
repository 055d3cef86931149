"""Structured output: a `response_format` (a pydantic model class or an object JSON schema) as the
schema a wire sends, and a reply's text checked against it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from amaos_llm.errors import InvalidRequest


def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The object JSON schema `response_format` stands for (None for None)."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    if isinstance(response_format, Mapping):
        if response_format.get("type") != "object":
            raise InvalidRequest("response_format: a JSON schema must describe an object (type: object)")
        return dict(response_format)
    raise InvalidRequest(
        f"response_format: must be a pydantic model class or a JSON schema dict, got {type(response_format).__name__}"
    )


def schema_name(response_format: Any) -> str:
    """A name for the schema where a wire wants one (OpenAI's `json_schema.name`, Anthropic's forced tool)."""
    if isinstance(response_format, type):
        return response_format.__name__
    title = response_format.get("title") if isinstance(response_format, Mapping) else None
    return title if isinstance(title, str) and title.isidentifier() else "response"


def parse_output(text: str, response_format: Any) -> Any:
    """The reply as the validated instance (a dict for a schema). Raises `ValueError` (a JSON error or
    a `pydantic.ValidationError`) when it does not fit; a schema dict is only checked to be an object."""
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_validate_json(text)
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
