"""A plain Python function as a model: the `register_model` hook.

`fn(messages, **params)` may be sync or async and returns a `str`, or a mapping / object with
`content` and optionally `input_tokens`, `output_tokens` and `finish_reason`; or it may be an async
generator of `str` pieces, which `stream()` passes on one chunk each. A function that
reports no token counts gets 0s: counts are never guessed from text length. A sync function runs
on the event loop (no thread hop, so it costs nothing); one that blocks should be async instead.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from amaos_llm.errors import ModelLoadError, ProviderError
from amaos_llm.providers.base import Provider, ProviderChunk, ProviderReply, ProviderRequest
from amaos_llm.types import Usage

if TYPE_CHECKING:
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec

ModelFunction = Callable[..., Any]


class CallableProvider(Provider):
    local = True

    def __init__(self, spec: ModelSpec, api_key: SecretStr | None = None, fn: ModelFunction | None = None):
        super().__init__(spec, api_key)
        self._fn = fn

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        # Whatever the user's function raises, the manager records as this model's failure.
        out = self._call(request)
        if inspect.isasyncgen(out):
            pieces = [piece async for piece in out]
            return ProviderReply("".join(pieces), 0, 0, "stop", request.model)
        if inspect.isawaitable(out):
            out = await out
        return _reply(out, request.model)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        out = self._call(request)
        if not inspect.isasyncgen(out):
            if inspect.isawaitable(out):
                out = await out
            reply = _reply(out, request.model)
            if reply.content:
                yield ProviderChunk(text=reply.content)
            yield ProviderChunk(usage=Usage(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens),
                                finish_reason=reply.finish_reason or "stop")
            return
        try:
            async for piece in out:
                if piece:
                    yield ProviderChunk(text=str(piece))
        finally:
            await out.aclose()  # at once, when our consumer stops early
        yield ProviderChunk(usage=Usage(), finish_reason="stop")

    def _call(self, request: ProviderRequest) -> Any:
        if self._fn is None:
            raise ModelLoadError(
                f"no function is registered for callable model {self.spec.name!r}: "
                "call manager.register_model(name, fn) first"
            )
        params: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.seed is not None:
            params["seed"] = request.seed
        return self._fn(list(request.messages), **params, **request.options)


def _reply(out: Any, model: str) -> ProviderReply:
    if isinstance(out, str):
        return ProviderReply(out, 0, 0, "stop", model)
    get = out.get if isinstance(out, Mapping) else lambda key, default=None: getattr(out, key, default)
    content = get("content")
    if not isinstance(content, str):
        raise ProviderError(f"callable model returned {type(out).__name__} without a string 'content'")
    return ProviderReply(
        content, int(get("input_tokens", 0) or 0), int(get("output_tokens", 0) or 0),
        get("finish_reason", "stop"), model,
    )
