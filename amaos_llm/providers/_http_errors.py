"""One mapping from an HTTP failure to an `amaos_llm.errors` class, shared by the provider modules.

Each provider module catches its own SDK's exception types (in one small context manager) and
calls these functions with what it could read: the status, a short message, `Retry-After`.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from amaos_llm.errors import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceeded,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)

MAX_MESSAGE = 300  # a server may echo the whole request back; keep errors short
# The error codes/types that say "the request does not fit the context window": OpenAI's, and
# llama.cpp's server's (the same words its in-process runtime uses).
CONTEXT_OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})


def error_for_status(
    provider: str, status: int | None, message: str, retry_after: float | None = None, body: object = None
) -> ProviderError:
    """The error for an HTTP status; `message` must already be redacted. `None` (or a non-error
    status such as 200 or Ollama's -1) means an error event inside an otherwise successful reply:
    a `ServerError`. A 400 whose `body` carries a context-overflow code is a `ContextWindowExceeded`."""
    if status is None or status < 400:
        return ServerError(f"{provider}: error in reply: {_short(message)}", status_code=status)
    text = f"{provider}: HTTP {status}: {_short(message)}"
    if status in (401, 402, 403):  # 402: the key's account cannot pay; another key may
        return AuthenticationError(text, status_code=status)
    if status == 429:
        return RateLimitError(text, status_code=status, retry_after=retry_after)
    if status in (408, 504):
        return ProviderTimeout(text, status_code=status)
    if status >= 500:
        # 503/529 ("overloaded") may say when to come back, like a 429
        return ServerError(text, status_code=status, retry_after=retry_after if status in (503, 529) else None)
    if status == 400 and _is_context_overflow(body):
        return ContextWindowExceeded(text, status_code=status)
    return BadRequestError(text, status_code=status, unsupported=unsupported_parameter(body))


UNSUPPORTED_CODES = frozenset({"unsupported_parameter", "unsupported_value"})


def unsupported_parameter(body: object) -> str | None:
    """The request parameter an error body names, in a structured field, as not supported: an
    OpenAI-protocol `error.param` with code unsupported_parameter/unsupported_value, or Google's
    `fieldViolations[].field` (by its last path segment: `generation_config.seed` → `seed`). The
    message text is never read: "not supported" in prose may be about anything."""
    inner = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(inner, Mapping):
        return None
    param = inner.get("param")
    if inner.get("code") in UNSUPPORTED_CODES and isinstance(param, str) and param:
        return param
    for detail in inner.get("details") or ():
        if isinstance(detail, Mapping):
            for violation in detail.get("fieldViolations") or ():
                field = violation.get("field") if isinstance(violation, Mapping) else None
                if isinstance(field, str) and field:
                    return field.rsplit(".", 1)[-1]
    return None


def _is_context_overflow(body: object) -> bool:
    inner = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(inner, Mapping):
        return False
    return inner.get("code") in CONTEXT_OVERFLOW_CODES or inner.get("type") in CONTEXT_OVERFLOW_CODES


class SdkErrors:
    """Maps the exceptions of a Stainless-generated SDK (`openai`, `anthropic`: the same tree).

    A provider builds one and enters it around every SDK call: a plain object, because a
    generator-based context manager per call costs more than the rest of the provider's work.
    An error event inside a stream arrives as `APIStatusError` with status 200 (anthropic) or a
    bare `APIError` (openai); a stream cut mid-way can escape as a raw `httpx2` error. `url()`
    gives the base URL the client sends to, read only when a connection fails."""

    __slots__ = ("_sdk", "_provider", "_redact", "_url", "_httpx2")

    def __init__(self, sdk: Any, provider: str, redact: Callable[[str], str], url: Callable[[], str]) -> None:
        import httpx2

        self._sdk, self._provider, self._redact, self._url, self._httpx2 = sdk, provider, redact, url, httpx2

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and isinstance(exc, Exception):
            mapped = self._mapped(exc)
            if mapped is not None:
                raise mapped from exc

    def _mapped(self, exc: Exception) -> ProviderError | None:
        sdk, provider, redact, httpx2 = self._sdk, self._provider, self._redact, self._httpx2
        if isinstance(exc, sdk.APIStatusError):
            return error_for_status(provider, exc.status_code, redact(body_message(exc.body)),
                                    retry_after_seconds(exc.response.headers), exc.body)
        if isinstance(exc, (sdk.APITimeoutError, httpx2.TimeoutException)):
            fault = aiohttp_connection_fault(exc)
            if fault is not None:
                return connection_error(provider, redact(describe(fault)), url=redact(self._url()), cause=fault)
            return timeout_error(provider, redact(describe(exc)))
        if isinstance(exc, (sdk.APIConnectionError, httpx2.TransportError, ConnectionError)):
            return connection_error(provider, redact(describe(exc)), url=redact(self._url()), cause=exc)
        if isinstance(exc, (sdk.APIResponseValidationError, json.JSONDecodeError)):
            return malformed_reply(provider, redact(describe(exc)))
        if isinstance(exc, sdk.APIError):  # any other failure the SDK reports about the reply
            return error_for_status(provider, None, redact(body_message(exc.body or exc.message)))
        return None


def aiohttp_connection_fault(exc: BaseException) -> BaseException | None:
    """The aiohttp connection failure behind a timeout `exc`, when it was not a timeout at all.

    The aiohttp transports for httpx (openai's vendored copy, `httpx-aiohttp` for ollama) turn
    aiohttp's `ClientConnectionError`, hence a refused or dropped connection, into `ConnectTimeout`,
    so the SDK reports a timeout where the connection failed; the aiohttp error is kept as a cause.
    """
    aiohttp = sys.modules.get("aiohttp")  # not imported here: only a loaded aiohttp can have raised
    if aiohttp is None:
        return None
    cause = exc.__cause__
    while cause is not None and not isinstance(cause, aiohttp.ClientError):
        cause = cause.__cause__
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
        return cause
    return None


def connection_error(
    provider: str, detail: str, *, url: str, cause: BaseException | None = None
) -> ProviderConnectionError:
    """The SDKs say only "Connection error.": name the URL that was tried (a typo'd port, a server
    not started, an env var pointing elsewhere all look the same otherwise). `cause` tells whether
    the request had gone out (a reset or a cut reply: worth a retry) or never connected."""
    return ProviderConnectionError(f"{provider}: connection to {shown_url(url)} failed: {_short(detail)}",
                                   connected=cause is not None and went_out(cause))


# Transport failures by class name, across httpx, httpx2 and aiohttp (the SDKs sit on either):
# the connection never opened, or it broke after the request was sent.
_NEVER_CONNECTED = frozenset({"ConnectError", "ConnectTimeout", "ClientConnectorError", "ClientConnectorDNSError",
                              "ClientConnectorCertificateError", "ClientProxyConnectionError", "InvalidURL"})
_CUT_AFTER_SEND = frozenset({"RemoteProtocolError", "ReadError", "WriteError", "ServerDisconnectedError",
                             "ClientPayloadError", "IncompleteRead", "ContentLengthError"})


def went_out(exc: BaseException) -> bool:
    """True when `exc` says the connection broke after the request was sent. The innermost known
    error decides: transports re-wrap (the aiohttp transport raises `ConnectError` for aiohttp's
    `ServerDisconnectedError`), so the outer names can mislead."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:  # a few levels at most; a cycle must not hang us
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for error in reversed(chain):
        name = type(error).__name__
        if name in _NEVER_CONNECTED or isinstance(error, (ConnectionRefusedError, socket.gaierror)):
            return False
        if name in _CUT_AFTER_SEND or isinstance(error, (ConnectionResetError, BrokenPipeError)):
            return True
    return False


def shown_url(url: str) -> str:
    """`url` fit for an error message: without user info, query or fragment, where a key could sit."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def timeout_error(provider: str, detail: str) -> ProviderTimeout:
    return ProviderTimeout(f"{provider}: timed out: {_short(detail)}")


def malformed_reply(provider: str, detail: str) -> ServerError:
    return ServerError(f"{provider}: malformed reply: {_short(detail)}")


def describe(exc: BaseException) -> str:
    """`Type: message` of a transport exception (some have an empty message)."""
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def body_message(body: object) -> str:
    """The human part of an error body: `{"error": {"message": ...}}`, `{"error": "..."}`,
    `{"message": ...}`, or the body itself."""
    if isinstance(body, Mapping):
        inner: Any = body.get("error", body)
        if isinstance(inner, Mapping):
            inner = inner.get("message", inner)
        if inner is not body:
            return str(inner)
        if "message" in body:
            return str(body["message"])
    return str(body)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """`Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`, else None."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
