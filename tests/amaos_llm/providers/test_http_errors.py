"""The shared status → error mapping and Retry-After parsing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from amaos_llm.errors import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceeded,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from amaos_llm.providers._http_errors import (
    body_message,
    connection_error,
    error_for_status,
    retry_after_seconds,
    shown_url,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError), (401, AuthenticationError), (403, AuthenticationError), (404, BadRequestError),
        (408, ProviderTimeout), (422, BadRequestError), (429, RateLimitError), (500, ServerError),
        (502, ServerError), (503, ServerError), (504, ProviderTimeout), (529, ServerError),
    ],
)
def test_status_maps_to_error_class(status: int, kind: type) -> None:
    error = error_for_status("x", status, "boom")
    assert (type(error), error.status_code, str(error)) == (kind, status, f"x: HTTP {status}: boom")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"error": {"code": "context_length_exceeded", "message": "too long"}}, ContextWindowExceeded),  # OpenAI
        ({"code": "context_length_exceeded", "message": "too long"}, ContextWindowExceeded),  # the SDK's .body
        ({"error": {"code": 400, "type": "exceed_context_size_error"}}, ContextWindowExceeded),  # llama.cpp
        ({"error": {"code": "invalid_value", "message": "context_length_exceeded"}}, BadRequestError),
        ("context_length_exceeded", BadRequestError),
        (None, BadRequestError),
    ],
)
def test_a_400_is_a_context_window_error_only_by_its_code(body: object, kind: type) -> None:
    assert type(error_for_status("x", 400, "boom", body=body)) is kind


@pytest.mark.parametrize("status", [None, -1, 200])
def test_error_inside_a_successful_reply_is_server_error(status: int | None) -> None:
    error = error_for_status("x", status, "overloaded")
    assert (type(error), str(error)) == (ServerError, "x: error in reply: overloaded")


def test_rate_limit_carries_retry_after() -> None:
    error = error_for_status("x", 429, "slow down", 2.5)
    assert isinstance(error, RateLimitError) and error.retry_after == 2.5


def test_long_messages_are_cut() -> None:
    assert len(str(error_for_status("x", 500, "a" * 5000))) == len("x: HTTP 500: ") + 300


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str] | None, seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_retry_after_as_http_date() -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 27 <= retry_after_seconds({"retry-after": when}) <= 30


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "bad key", "type": "x"}}, "bad key"),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "Overloaded"),
        ({"error": "model not found"}, "model not found"),
        ({"message": "plain"}, "plain"),
        ("raw text", "raw text"),
    ],
)
def test_body_message_finds_the_human_part(body: object, message: str) -> None:
    assert body_message(body) == message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("https://generativelanguage.googleapis.com/", "https://generativelanguage.googleapis.com"),
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("http://user:sk-secret@10.0.0.2:8000/v1?key=sk-secret#frag", "http://10.0.0.2:8000/v1"),
    ],
)
def test_shown_url_drops_user_info_query_and_trailing_slash(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_connection_error_names_the_url() -> None:
    error = connection_error("openai", "APIConnectionError: Connection error.", url="http://u:k@host:1/v1/")
    assert str(error) == "openai: connection to http://host:1/v1 failed: APIConnectionError: Connection error."
