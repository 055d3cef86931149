"""OpenAI chat completions through the official `openai` SDK; serves `openai` and `openai_compatible`.

`openai_compatible` servers (vLLM, llama.cpp, xllamacpp, LM Studio) accept any key, so a missing
one is replaced by a placeholder. The token limit travels as `max_tokens`, which every
compatible server reads; for `openai` itself and Azure OpenAI as `max_completion_tokens`, the
name both APIs take and their reasoning (o-series) models require. `spec.options` (then
`request.options`) are sent as extra body fields (e.g. vLLM's `top_k`). With no `base_url` the
SDK reads `OPENAI_BASE_URL` itself.

The body goes through the SDK's `post()`, the call `chat.completions.create()` makes, with the
same path, options and JSON, minus two per-call costs that buy nothing here: `create()` walks the
body against its TypedDicts (an identity for chat bodies: no field has an alias or a format,
checked by tests/amaos_llm/providers/test_openai_body.py) and builds a typed `ChatCompletion` of
which the reply needs six fields. Together 430 of the raw SDK's 1,020 µs of CPU per call on
aiohttp (bench/README.md, "Where the raw SDK's CPU goes"). Stream chunks are still the SDK's typed ones.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import ProviderError
from amaos_llm.providers._http_errors import SdkErrors, malformed_reply
from amaos_llm.providers._openai_wire import tool_params, wire_messages
from amaos_llm.providers._tool_calls import ToolCallJoiner, tool_call
from amaos_llm.providers._transport import stainless_http_client
from amaos_llm.providers.base import (
    MID_STREAM,
    Provider,
    ProviderChunk,
    ProviderReply,
    ProviderRequest,
    StreamUsage,
    close_shielded,
    finish_reason,
    stream_cut,
)

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

CHAT_PATH = "/chat/completions"
PLACEHOLDER_KEY = "unused"  # compatible servers want some bearer token, any will do
COMPLETION_TOKENS_PROVIDERS = frozenset({"openai", "azure_openai"})  # the rest read only `max_tokens`


class OpenAIProvider(Provider):
    key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    key_required: ClassVar[bool] = True

    _sdk_client: openai.AsyncOpenAI | None = None
    _sdk_errors: SdkErrors | None = None  # built once: entered around every SDK call

    def _client(self) -> openai.AsyncOpenAI:
        if self._sdk_client is None:
            import openai

            if self.spec.provider == "openai" or self._api_key is not None:
                key = self.required_key()
            else:
                key = PLACEHOLDER_KEY
            http_client = stainless_http_client(self.spec, openai)
            kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0, "http_client": http_client}
            if self.spec.base_url:
                kwargs["base_url"] = self.spec.base_url
            self._sdk_client = self._new_client(openai, kwargs)
        return self._sdk_client

    def _body(self, request: ProviderRequest) -> dict[str, Any]:
        """The JSON `create()` would send for these fields, extra fields last (they win, as `extra_body`)."""
        limit = "max_completion_tokens" if self.spec.provider in COMPLETION_TOKENS_PROVIDERS else "max_tokens"
        body: dict[str, Any] = {"model": request.model, "messages": wire_messages(request.messages),
                                "temperature": request.temperature, limit: request.max_tokens,
                                **tool_params(request)}
        if request.seed is not None:
            body["seed"] = request.seed
        if self.spec.options or request.options:
            body.update(self.spec.options)
            body.update(request.options)
        return body

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        body = self._body(request)
        client = self._client()
        async with self.http_slots():
            with self._errors():
                data = await client.post(CHAT_PATH, cast_to=object, body=body, options=_sent_as_create())
        try:
            return _reply(data)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            detail = f"not a chat completion ({type(exc).__name__}: {exc}): {str(data)[:200]}"
            raise malformed_reply(self.spec.provider, self.redact(detail)) from exc

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """Deltas as they arrive; done only after a `finish_reason` and, from OpenAI itself, the
        usage chunk (`choices: []`) that `include_usage` asks for. Tool calls come whole, at the end."""
        body = self._body(request)
        body["stream"], body["stream_options"] = True, {"include_usage": True}
        client = self._client()
        async with self.http_slots():
            with self._errors():
                stream = await client.post(CHAT_PATH, cast_to=_chunk_type(), body=body, options=_sent_as_create(),
                                           stream=True, stream_cls=_stream_type())
            try:
                joiner, finish, usage, model = ToolCallJoiner(), None, None, None
                with MID_STREAM, self._errors():
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = chunk.usage
                        for choice in chunk.choices:
                            delta = choice.delta
                            if delta.content:
                                yield ProviderChunk(text=delta.content)
                            for frag in delta.tool_calls or ():
                                fn = frag.function
                                joiner.add(frag.index, frag.id, fn.name if fn else None, fn.arguments if fn else None)
                            if choice.finish_reason is not None:
                                finish, model = choice.finish_reason, chunk.model
            finally:
                await close_shielded(stream.close)
        if finish is None:
            raise stream_cut(self.spec.provider, "a finish_reason")
        if usage is None:
            if self.spec.provider == "openai":  # OpenAI always sends it last: without it the stream was cut
                raise stream_cut(self.spec.provider, "its usage chunk")
            _warn_no_usage(self.spec.name)
        calls = joiner.calls() if joiner else []
        for call in calls:
            yield ProviderChunk(tool_call=call)
        counts = StreamUsage(0, 0)
        if usage is not None:
            counts = StreamUsage(usage.prompt_tokens, usage.completion_tokens, _cached(usage))
        yield ProviderChunk(usage=counts, finish_reason=finish_reason(finish, bool(calls)), model=model)

    async def health(self) -> bool:
        """True when `GET /models` answers (reachable, key accepted) and lists this model."""
        try:
            client = self._client()
            with self._errors():
                page = await client.models.list()
        except ProviderError:
            return False
        return any(m.id == self.spec.model for m in page.data)

    def _errors(self) -> SdkErrors:
        if self._sdk_errors is None:
            import openai

            url = lambda: str(self._client().base_url)  # noqa: E731  (read only when a connection fails)
            self._sdk_errors = SdkErrors(openai, self.spec.provider, self.redact, url)
        return self._sdk_errors

    def _new_client(self, sdk: Any, kwargs: dict[str, Any]) -> openai.AsyncOpenAI:
        """The SDK client from the common arguments; a subclass on another endpoint (Azure) overrides it."""
        return sdk.AsyncOpenAI(**kwargs)


def _sent_as_create() -> dict[str, Any]:
    # what create() passes: the key goes as a bearer token (fresh per call: the SDK keeps a reference)
    return {"security": {"bearer_auth": True}}


def _chunk_type() -> Any:
    from openai.types.chat import ChatCompletionChunk

    return ChatCompletionChunk


def _stream_type() -> Any:
    from openai import AsyncStream
    from openai.types.chat import ChatCompletionChunk

    return AsyncStream[ChatCompletionChunk]


def _reply(data: Any) -> ProviderReply:
    """A `ProviderReply` from a chat completion's JSON: null or absent optional fields read as the
    SDK's lenient model would give them (no usage: 0 tokens; no choices: empty text)."""
    choices = data["choices"]
    choice = choices[0] if choices else None
    message = choice["message"] if choice else None
    calls = [tool_call(c.get("id"), c["function"]["name"], c["function"].get("arguments"))
             for c in (message.get("tool_calls") or ()) if c.get("type") == "function"] if message else []
    usage = data.get("usage") or {}
    return ProviderReply(
        content=(message.get("content") if message else None) or "",
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        finish_reason=finish_reason(choice.get("finish_reason") if choice else None, bool(calls)),
        model=data.get("model"),
        tool_calls=calls,
        cache_read_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
    )


def _cached(usage: Any) -> int:
    """Prompt tokens served from OpenAI's cache (part of `prompt_tokens`, billed at their own price)."""
    details = usage.prompt_tokens_details if usage is not None else None
    return (details.cached_tokens or 0) if details is not None else 0


_warned_no_usage: set[str] = set()


def _warn_no_usage(model_name: str) -> None:
    # Some compatible servers ignore `include_usage`: their streams cost 0 tokens, said once per model.
    if model_name not in _warned_no_usage:
        _warned_no_usage.add(model_name)
        logger.warning("%s: the server sent no usage in its stream; counting 0 tokens", model_name)
