"""Bedrock's Converse wire for `providers.bedrock`: the request body, the reply, the error codes.

Pure functions and one error-mapping object; botocore and aiohttp are imported only when an
exception has to be mapped (a loaded SDK is the only thing that can have raised one).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
from amaos_llm.providers._http_errors import (
    MAX_MESSAGE,
    connection_error,
    describe,
    error_for_status,
    malformed_reply,
    shown_url,
    timeout_error,
)
from amaos_llm.providers.base import ProviderReply, StreamUsage

if TYPE_CHECKING:
    from amaos_llm.types import Message

PROVIDER = "bedrock"
PRICES_PROVIDER = "aws"  # genai-prices' id for Bedrock
# Cross-region inference profiles: `us.anthropic.claude-…` routes within the US, and so on.
# `global.` is a profile too, but priced apart, so it is never stripped for pricing.
REGIONAL_PROFILE_PREFIXES = ("us", "eu", "apac", "us-gov", "jp", "au", "ca")
PROFILE_PREFIXES = (*REGIONAL_PROFILE_PREFIXES, "global")

# Converse's stopReason → the finish reasons the other providers report.
FINISH_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "content_filtered": "content_filter", "guardrail_intervened": "content_filter",
}
# Options that are Converse `inferenceConfig` fields; any other option goes to the model itself
# in `additionalModelRequestFields` (e.g. Anthropic's `top_k`).
INFERENCE_FIELDS = frozenset({"topP", "stopSequences"})

# Error codes (`x-amzn-ErrorType`, or an in-stream `:exception-type` with a lower-case first letter).
RATE_LIMITED = frozenset({"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"})
SERVER_SIDE = frozenset({"ServiceUnavailableException", "ModelNotReadyException", "InternalServerException",
                         "ModelErrorException", "ModelStreamErrorException", "InternalFailure", "ServiceUnavailable"})
REFUSED = frozenset({"AccessDeniedException", "UnrecognizedClientException", "MissingAuthenticationTokenException",
                     "InvalidSignatureException", "ExpiredTokenException", "IncompleteSignature",
                     "InvalidClientTokenId", "ExpiredToken"})
# A ValidationException is the code for every bad request, a prompt too long for the model
# included; no structured field tells them apart, so these phrasings of Bedrock's do.
CONTEXT_OVERFLOW_PHRASES = ("input is too long", "too many input tokens", "prompt is too long", "context length",
                            "context window", "maximum context", "too many total text bytes")


# The reply and stream shapes are the contract's own (cache counts included).
BedrockReply = ProviderReply


def is_inference_profile(model_id: str) -> bool:
    if ":inference-profile/" in model_id or ":application-inference-profile/" in model_id:
        return True
    prefix, dot, _ = model_id.partition(".")
    return bool(dot) and prefix in PROFILE_PREFIXES


def converse_args(request_model: str, messages: Sequence[Message], temperature: float, max_tokens: int,
                  options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `converse`/`converse_stream`. Converse has no seed field."""
    system = [{"text": m.content} for m in messages if m.role == "system" and m.content]
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        # a `tool` message without a toolUseId can only travel as user text; Converse wants the
        # roles to alternate, so consecutive messages of one role become blocks of one turn
        role = "assistant" if m.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].append({"text": m.content})
        else:
            turns.append({"role": role, "content": [{"text": m.content}]})
    inference: dict[str, Any] = {"maxTokens": max_tokens, "temperature": temperature}
    model_fields: dict[str, Any] = {}
    for key, value in options.items():
        (inference if key in INFERENCE_FIELDS else model_fields)[key] = value
    args: dict[str, Any] = {"modelId": request_model, "messages": turns, "inferenceConfig": inference}
    if system:
        args["system"] = system
    if model_fields:
        args["additionalModelRequestFields"] = model_fields
    return args


def finish_reason(stop_reason: str | None) -> str | None:
    return None if stop_reason is None else FINISH_REASONS.get(stop_reason, stop_reason)


def stream_usage(usage: Mapping[str, Any]) -> StreamUsage:
    """Bedrock's `inputTokens` leaves out the tokens read from and written to the prompt cache,
    which are billed as input too: they are added, and kept apart beside it."""
    try:
        read, write = int(usage.get("cacheReadInputTokens") or 0), int(usage.get("cacheWriteInputTokens") or 0)
        return StreamUsage(int(usage["inputTokens"]) + read + write, int(usage["outputTokens"]), read, write)
    except (KeyError, TypeError, ValueError) as exc:
        raise malformed_reply(PROVIDER, f"usage without token counts: {dict(usage)!r}") from exc


def reply_of(response: Mapping[str, Any], model: str) -> BedrockReply:
    """`converse`'s answer as a reply; a reply without usage is malformed (no counts are made up)."""
    usage = stream_usage(response.get("usage") or {})
    blocks = ((response.get("output") or {}).get("message") or {}).get("content") or []
    return BedrockReply(
        content="".join(b["text"] for b in blocks if "text" in b),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        finish_reason=finish_reason(response.get("stopReason")),
        model=model,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


# botocore's DEBUG logs print each signed request: the canonical request (`botocore.auth`) and the
# prepared headers (`botocore.endpoint`) both carry the session token, and the headers a Bedrock
# API key (`Authorization: Bearer …`): both are credentials.
_TOKEN_LOGGERS = ("botocore.auth", "botocore.endpoint")
_SESSION_TOKEN = re.compile(r"(x-amz-security-token'?:\s*b?'?|Bearer )[^'\s,}]+", re.IGNORECASE)


class _HideTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:  # only DEBUG records print requests; the rest pass untouched
            message = record.getMessage()
            hidden = _SESSION_TOKEN.sub(r"\1***", message)
            if hidden != message:
                record.msg, record.args = hidden, None
        return True


def hide_tokens_in_logs() -> None:
    """Put the token-hiding filter on botocore's two request loggers, once per process."""
    for name in _TOKEN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideTokens) for f in logger.filters):
            logger.addFilter(_HideTokens())


def no_credentials() -> AuthenticationError:
    return AuthenticationError(f"{PROVIDER}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE, or a Bedrock API key "
                               "in AWS_BEARER_TOKEN_BEDROCK")


class BedrockErrors:
    """Maps botocore's and aiohttp's exceptions at the provider's boundary, by the service's error
    code, never its text (a context overflow aside: see `CONTEXT_OVERFLOW_PHRASES`).

    A plain object entered around every SDK call, as `SdkErrors` is for the Stainless SDKs.
    `model`, `region` and `url` name what was asked of whom in the messages."""

    __slots__ = ("_model", "_region", "_url")

    def __init__(self, model: str, region: Callable[[], str | None], url: Callable[[], str]) -> None:
        self._model, self._region, self._url = model, region, url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and isinstance(exc, Exception) and not isinstance(exc, ProviderError):
            mapped = self.mapped(exc)
            if mapped is not None:
                raise mapped from exc

    def mapped(self, exc: Exception) -> ProviderError | None:
        from botocore import exceptions as bex
        from botocore.eventstream import ParserError as EventStreamParserError
        from botocore.parsers import ResponseParserError

        if isinstance(exc, bex.ClientError):  # EventStreamError (an in-stream exception event) included
            error = exc.response.get("Error") or {}
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            return self.for_code(str(error.get("Code") or ""), str(error.get("Message") or ""), status)
        if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError, bex.CredentialRetrievalError)):
            return no_credentials()
        if isinstance(exc, bex.NoRegionError):
            return BadRequestError(f"{PROVIDER}: no AWS region for {self._model}; set `region:` on the model "
                                   "or AWS_REGION")
        if isinstance(exc, bex.ParamValidationError):
            return BadRequestError(f"{PROVIDER}: {describe(exc)}")
        if isinstance(exc, bex.ReadTimeoutError):
            return timeout_error(PROVIDER, describe(exc))
        if isinstance(exc, (bex.EndpointConnectionError, bex.ConnectTimeoutError)):
            return connection_error(PROVIDER, describe(exc), url=self._url(), cause=None)  # never connected
        if isinstance(exc, (bex.ConnectionClosedError, bex.ResponseStreamingError, bex.IncompleteReadError)):
            return self.cut(describe(exc))
        if isinstance(exc, bex.HTTPClientError):
            return connection_error(PROVIDER, describe(exc), url=self._url(), cause=exc)
        if isinstance(exc, (ResponseParserError, EventStreamParserError, json.JSONDecodeError)):
            return malformed_reply(PROVIDER, describe(exc))
        aiohttp = sys.modules.get("aiohttp")
        if aiohttp is not None and isinstance(exc, aiohttp.ClientError):  # raw, while a stream is read
            if isinstance(exc, TimeoutError):
                return timeout_error(PROVIDER, describe(exc))
            return connection_error(PROVIDER, describe(exc), url=self._url(), cause=exc)
        if isinstance(exc, TimeoutError):
            return timeout_error(PROVIDER, describe(exc))
        if isinstance(exc, OSError):
            return connection_error(PROVIDER, describe(exc), url=self._url(), cause=exc)
        return None

    def for_code(self, code: str, message: str, status: int | None) -> ProviderError:
        # in-stream exception events spell the code with a lower-case first letter
        code = code[:1].upper() + code[1:]
        message = " ".join(message.split())[:MAX_MESSAGE]  # a server may echo the request back
        text = f"{PROVIDER}: {code}: {message}" if code else f"{PROVIDER}: {message}"
        if code in RATE_LIMITED:
            return RateLimitError(text, status_code=status or 429)
        if code in SERVER_SIDE:
            return ServerError(text, status_code=status)
        if code == "ModelTimeoutException":
            return ProviderTimeout(text, status_code=status)
        if code in REFUSED:
            return AuthenticationError(text, status_code=status or 403)
        if code == "ResourceNotFoundException":
            region = self._region() or "the default region"
            return BadRequestError(f"{PROVIDER}: model {self._model!r} not found in {region}: {message}",
                                   status_code=status or 404)
        if code == "ValidationException":
            if any(phrase in message.lower() for phrase in CONTEXT_OVERFLOW_PHRASES):
                return ContextWindowExceeded(f"{PROVIDER}: the request does not fit {self._model}'s context "
                                             f"window: {message}", status_code=status or 400)
            return BadRequestError(text, status_code=status or 400)
        return error_for_status(PROVIDER, status, text.removeprefix(f"{PROVIDER}: "))

    def cut(self, detail: str) -> ProviderConnectionError:
        """The connection broke (or the stream ended) after the request went out."""
        return ProviderConnectionError(f"{PROVIDER}: connection to {shown_url(self._url())} failed: {detail}",
                                       connected=True)
