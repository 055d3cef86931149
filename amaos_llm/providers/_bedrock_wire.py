"""Bedrock's Converse wire for `providers.bedrock`: the request body, the reply, the error codes.

The request: system messages become `system` blocks; consecutive messages of one role become the
blocks of one turn (Converse wants the roles to alternate), so a turn's tool results travel together
in one user turn as `toolResult` blocks right after the assistant's `toolUse` blocks; images are
`image` blocks of raw bytes (botocore base64s them). Tools are `toolConfig.tools[].toolSpec`, and
structured output is a forced tool whose input is the answer (as on Anthropic's wire): its input,
whole or streamed, is the reply's text.

Pure functions and small objects; botocore and aiohttp are imported only when an exception has to
be mapped (a loaded SDK is the only thing that can have raised one).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from amaos_llm.content import ImagePart, TextPart
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
from amaos_llm.history import for_wire
from amaos_llm.providers._http_errors import (
    MAX_MESSAGE,
    connection_error,
    describe,
    error_for_status,
    malformed_reply,
    shown_url,
    timeout_error,
)
from amaos_llm.providers._tool_calls import tool_call
from amaos_llm.providers.base import FinishReason, ProviderReply, StreamUsage, finish_reason
from amaos_llm.structured import RESPONSE_TOOL, RESPONSE_TOOL_DESCRIPTION
from amaos_llm.types import ToolCall

if TYPE_CHECKING:
    from amaos_llm.providers.base import ProviderRequest
    from amaos_llm.types import Message

PROVIDER = "bedrock"
PRICES_PROVIDER = "aws"  # genai-prices' id for Bedrock
# Cross-region inference profiles: `us.anthropic.claude-…` routes within the US, and so on.
# `global.` is a profile too, but priced apart, so it is never stripped for pricing.
REGIONAL_PROFILE_PREFIXES = ("us", "eu", "apac", "us-gov", "jp", "au", "ca")
PROFILE_PREFIXES = (*REGIONAL_PROFILE_PREFIXES, "global")

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


TOOL_CHOICES = {"auto": {"auto": {}}, "required": {"any": {}}}  # Converse has no "none": see tool_config
HISTORY_TOOL = "A tool called earlier in this conversation."
ANY_OBJECT = {"type": "object"}


def converse_args(request: ProviderRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `converse`/`converse_stream`. Converse has no seed field."""
    messages = for_wire(request.messages, PROVIDER)
    system = [{"text": m.text} for m in messages if m.role == "system" and m.text]
    turns = wire_turns([m for m in messages if m.role != "system"])
    inference: dict[str, Any] = {"maxTokens": request.max_tokens, "temperature": request.temperature}
    model_fields: dict[str, Any] = {}
    for key, value in options.items():
        (inference if key in INFERENCE_FIELDS else model_fields)[key] = value
    args: dict[str, Any] = {"modelId": request.model, "messages": turns, "inferenceConfig": inference}
    if system:
        args["system"] = system
    tools = tool_config(request, turns)
    if tools is not None:
        args["toolConfig"] = tools
    if model_fields:
        args["additionalModelRequestFields"] = model_fields
    return args


def wire_turns(messages: Sequence[Message]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = "assistant" if m.role == "assistant" else "user"  # a tool result is a user turn's block
        blocks = _blocks(m)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool" and m.tool_call_id is not None:
        result: dict[str, Any] = {"toolUseId": m.tool_call_id, "content": [{"text": m.text}]}
        if m.is_error:
            result["status"] = "error"
        return [{"toolResult": result}]
    if m.tool_calls:
        text = [{"text": m.text}] if m.text else []  # Converse refuses a blank text block
        return text + [{"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in m.tool_calls]
    content = m.content
    if type(content) is str:
        return [{"text": content}]  # a `tool` message without a toolUseId travels as user text
    return [_part(p) for p in content]


def _part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.data is None:
        raise BadRequestError(f"{PROVIDER}: images must be inline data; Converse fetches no URLs")
    # content.MEDIA_TYPES are image/png|jpeg|gif|webp: Converse's four formats, by the same names
    return {"image": {"format": str(part.media_type).removeprefix("image/"), "source": {"bytes": part.data}}}


def _tool_spec(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": schema}}
    if description:  # the service model's NonEmptyString: botocore refuses ""
        spec["description"] = description
    return {"toolSpec": spec}


def tool_config(request: ProviderRequest, turns: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """`toolConfig`: the tools and `toolChoice` (auto → auto, required → any, a name → tool), the
    structured-output tool, or None.

    Converse refuses `toolUse`/`toolResult` blocks in a request without a `toolConfig` and has no
    "none" choice, so with `tool_choice="none"` the tools are left out unless the history uses tools;
    then they are declared with no choice (the model's default, auto). A history that uses tools,
    sent with no tools at all, declares the tools it called by name."""
    used = [b["toolUse"]["name"] for t in turns for b in t["content"] if "toolUse" in b]
    offered = request.tools if request.tool_choice != "none" or used else ()
    specs = [_tool_spec(t.name, t.description, t.parameters) for t in offered]
    choice: dict[str, Any] | None = None
    if offered and request.tool_choice != "none":
        choice = TOOL_CHOICES.get(request.tool_choice) or {"tool": {"name": request.tool_choice}}
    if request.response_format is not None:
        specs.append(_tool_spec(RESPONSE_TOOL, RESPONSE_TOOL_DESCRIPTION, request.response_format))
        if choice is None:  # with tools of its own (and a choice), the model picks: a tool, or the answer
            choice = {"tool": {"name": RESPONSE_TOOL}}
    if not specs and used:
        specs = [_tool_spec(name, HISTORY_TOOL, ANY_OBJECT) for name in dict.fromkeys(used)]
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    if choice is not None:
        config["toolChoice"] = choice
    return config


def stream_usage(usage: Mapping[str, Any]) -> StreamUsage:
    """Bedrock's `inputTokens` leaves out the tokens read from and written to the prompt cache,
    which are billed as input too: they are added, and kept apart beside it."""
    try:
        read, write = int(usage.get("cacheReadInputTokens") or 0), int(usage.get("cacheWriteInputTokens") or 0)
        return StreamUsage(int(usage["inputTokens"]) + read + write, int(usage["outputTokens"]), read, write)
    except (KeyError, TypeError, ValueError) as exc:
        raise malformed_reply(PROVIDER, f"usage without token counts: {dict(usage)!r}") from exc


def reply_of(response: Mapping[str, Any], model: str, answer_tool: bool) -> BedrockReply:
    """`converse`'s answer as a reply; a reply without usage is malformed (no counts are made up).
    `answer_tool`: the request carried a `response_format`, whose forced tool's input is the text."""
    usage = stream_usage(response.get("usage") or {})
    blocks = ((response.get("output") or {}).get("message") or {}).get("content") or []
    texts, calls = [], []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            if answer_tool and use.get("name") == RESPONSE_TOOL:
                texts.append(json.dumps(use.get("input")))
            else:
                calls.append(_tool_use(use))
    return BedrockReply(
        content="".join(texts),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        finish_reason=end_reason(response.get("stopReason"), len(calls)),
        model=model,
        tool_calls=calls,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


def end_reason(stop_reason: str | None, calls: int) -> FinishReason:
    """The normalised finish reason; `tool_use` with no call to run was the forced answer tool: a stop."""
    if stop_reason == "tool_use" and not calls:
        stop_reason = "end_turn"
    return finish_reason(stop_reason, calls > 0)


def _tool_use(use: Mapping[str, Any]) -> ToolCall:
    arguments = use.get("input")
    if isinstance(arguments, dict):
        return ToolCall(id=use["toolUseId"], name=use["name"], arguments=arguments)
    return ToolCall(id=use["toolUseId"], name=use["name"], invalid_arguments=json.dumps(arguments))


class ToolUseBlocks:
    """ConverseStream's tool calls, joined: `contentBlockStart` names a call (`start.toolUse`), each
    `contentBlockDelta` brings a piece of its input as JSON text (`delta.toolUse.input`), and
    `contentBlockStop` ends it. The structured-output tool's pieces are the reply's text instead."""

    __slots__ = ("_answer", "_answer_index", "_open", "calls")

    def __init__(self, answer_tool: bool) -> None:
        self._answer = answer_tool
        self._answer_index = -1  # the block of the structured-output tool
        self._open: dict[int, tuple[str, str, list[str]]] = {}  # block index -> (id, name, input pieces)
        self.calls = 0  # calls ended so far

    def start(self, event: Mapping[str, Any]) -> None:
        use = (event.get("start") or {}).get("toolUse")
        if use is None:
            return
        index = event["contentBlockIndex"]
        if self._answer and use.get("name") == RESPONSE_TOOL:
            self._answer_index = index
        else:
            self._open[index] = (use["toolUseId"], use["name"], [])

    def delta(self, event: Mapping[str, Any], delta: Mapping[str, Any]) -> str | None:
        """The answer's text when this piece is the structured-output tool's, else None."""
        piece = (delta.get("toolUse") or {}).get("input")
        if not piece:
            return None
        index = event["contentBlockIndex"]
        if index == self._answer_index:
            return str(piece)
        entry = self._open.get(index)
        if entry is not None:
            entry[2].append(piece)
        return None

    def stop(self, event: Mapping[str, Any]) -> ToolCall | None:
        entry = self._open.pop(event.get("contentBlockIndex", -1), None)
        if entry is None:
            return None
        self.calls += 1
        return tool_call(entry[0], entry[1], "".join(entry[2]))


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
