"""A plain Python function as a model: the `register_model` hook.

`fn(messages, **params)` may be sync or async and returns a `str`, or a mapping / object with
`content` and optionally `input_tokens`, `output_tokens` and `finish_reason`. A function that
reports no token counts gets 0s: counts are never guessed from text length. A sync function runs
on the event loop (no thread hop, so it costs nothing); one that blocks should be async instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from amaos_llm.errors import ModelLoadError, ProviderError
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest

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
        if self._fn is None:
            raise ModelLoadError(
                f"no function is registered for callable model {self.spec.name!r}: "
                "call manager.register_model(name, fn) first"
            )
        params: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens}
        if request.seed is not None:
            params["seed"] = request.seed
        # Whatever the user's function raises, the manager records as this model's failure.
        out = self._fn(list(request.messages), **params, **request.options)
        if inspect.isawaitable(out):
            out = await out
        return _reply(out, request.model)


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
