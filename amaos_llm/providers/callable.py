"""A plain Python function as a model: the `register_model` hook.

`fn(messages, **params)` may be sync or async and returns a `str`, or a mapping / object with
`content` and optionally `input_tokens`, `output_tokens`, `finish_reason` and `tool_calls`
(`ToolCall`s or their dicts). It may also be an async generator of `str` pieces: the pieces stream
as they come (and join into one reply for `complete`). A function that reports no token counts gets
0s: counts are never guessed from text length. A sync function runs on the event loop (no thread
hop, so it costs nothing); one that blocks should be async instead. `tools`, `tool_choice` and
`response_format` are passed only when the call sets them, so a function that takes none keeps working
for plain calls.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from amaos_llm.errors import ModelLoadError, ProviderError
from amaos_llm.providers.base import (
    Provider,
    ProviderChunk,
    ProviderReply,
    ProviderRequest,
    StreamUsage,
    close_shielded,
    finish_reason,
)
from amaos_llm.types import ToolCall

if TYPE_CHECKING:
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec

ModelFunction = Callable[..., Any]


class CallableProvider(Provider):
    local = True
    keeps_on_close = True  # the function is the model: closing the manager must not drop it

    def __init__(self, spec: ModelSpec, api_key: SecretStr | None = None, fn: ModelFunction | None = None):
        super().__init__(spec, api_key)
        self._fn = fn

    def _call(self, request: ProviderRequest) -> Any:
        if self._fn is None:
            raise ModelLoadError(
                f"no function is registered for callable model {self.spec.name!r}: "
                "call manager.register_model(name, fn) first"
            )
        params: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.seed is not None:
            params["seed"] = request.seed
        if request.tools:
            params["tools"], params["tool_choice"] = list(request.tools), request.tool_choice
        if request.response_format is not None:
            params["response_format"] = request.response_format
        # Whatever the user's function raises, the manager records as this model's failure.
        return self._fn(list(request.messages), **params, **request.options)

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        out = self._call(request)
        if type(out) is CoroutineType:  # an `async def` function, the common case: one test
            return _reply(await out, request.model)
        if inspect.isasyncgen(out):
            pieces = [_piece(piece) async for piece in out]
            return ProviderReply("".join(pieces), 0, 0, "stop", request.model)
        if inspect.isawaitable(out):
            out = await out
        return _reply(out, request.model)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """An async generator's pieces as they come; any other function's reply as one chunk."""
        out = self._call(request)
        if not inspect.isasyncgen(out):
            if inspect.isawaitable(out):
                out = await out
            reply = _reply(out, request.model)
            if reply.content:
                yield ProviderChunk(text=reply.content)
            for call in reply.tool_calls:
                yield ProviderChunk(tool_call=call)
            yield ProviderChunk(usage=StreamUsage(reply.input_tokens, reply.output_tokens),
                                finish_reason=finish_reason(reply.finish_reason, bool(reply.tool_calls)),
                                model=reply.model)
            return
        try:
            async for piece in out:  # directly: a generator in between would be left unclosed on a break
                if _piece(piece):
                    yield ProviderChunk(text=piece)
        finally:
            await close_shielded(out.aclose)  # a consumer that stops early stops the user's generator too
        yield ProviderChunk(usage=StreamUsage(0, 0), finish_reason="stop", model=request.model)


def _piece(piece: Any) -> str:
    if not isinstance(piece, str):
        raise ProviderError(f"callable model streamed {type(piece).__name__}, not str")
    return piece


def _reply(out: Any, model: str) -> ProviderReply:
    if isinstance(out, str):
        return ProviderReply(out, 0, 0, "stop", model)
    if type(out) is dict and "tool_calls" not in out and "finish_reason" not in out \
            and type(out.get("content")) is str:  # content and counts only: the common reply
        return ProviderReply(out["content"], int(out.get("input_tokens") or 0), int(out.get("output_tokens") or 0),
                             "stop", model)
    get = out.get if isinstance(out, Mapping) else lambda key, default=None: getattr(out, key, default)
    content = get("content")
    if not isinstance(content, str):
        raise ProviderError(f"callable model returned {type(out).__name__} without a string 'content'")
    calls = [c if isinstance(c, ToolCall) else ToolCall.model_validate(c) for c in get("tool_calls") or ()]
    return ProviderReply(
        content, int(get("input_tokens", 0) or 0), int(get("output_tokens", 0) or 0),
        finish_reason(get("finish_reason", "stop"), bool(calls)), model, tuple(calls),
    )
