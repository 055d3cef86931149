"""`LLMManager.stream()` and spoon_ai's `chat_stream()`: the call's options checked at once, the
call itself run by the returned `ChunkStream` through the manager's one attempt loop (`_serve`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from amaos_llm.call_state import call_options
from amaos_llm.inputs import prompt_messages, system_and_messages
from amaos_llm.streaming import ChunkStream, StreamCall, check_first_token_timeout, check_mid_stream

if TYPE_CHECKING:
    from amaos_llm.budget import Budget
    from amaos_llm.config import LLMConfig


class StreamCalls:
    """The streaming calls of `LLMManager` (a mixin, as `ManagerControls` is)."""

    _config: LLMConfig
    _serve: Callable[..., Any]
    _only: Callable[[str], frozenset[str]]

    def stream(
        self,
        prompt_or_messages: str | Iterable[Any],
        *,
        system_prompt: str | None = None,
        callbacks: Sequence[Any] | None = None,
        mid_stream: str | None = None,
        first_token_timeout: float | None = None,
        force_model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        provider: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str = "auto",
        response_format: Any = None,
        max_cost: float | Decimal | None = None,
        budget: Budget | Sequence[Budget] | None = None,
    ) -> ChunkStream:
        """The answer as a `ChunkStream` of text chunks, then one final chunk with the result; idle
        until iterated. Routing, retries and fallback as in `chat()` until the first chunk; after
        it `mid_stream` (default `routing.mid_stream`) decides: fail, restart or continue.
        `first_token_timeout` bounds the wait for the first chunk (default: the model's, then
        `defaults.first_token_timeout`, then `timeout`); `timeout` bounds each later gap.
        `max_cost` and `budget` as in `complete()`."""
        mode = check_mid_stream(mid_stream, self._config.routing.mid_stream)
        state = StreamCall(callbacks or (), mode, check_first_token_timeout(first_token_timeout))
        options = call_options(temperature, max_tokens, force_model, None, None, None, False,
                               None if provider is None else self._only(provider), max_cost, budget, tools,
                               tool_choice, response_format)
        if isinstance(prompt_or_messages, str):
            build, args = prompt_messages, (prompt_or_messages, system_prompt)
        else:
            build, args = system_and_messages, (prompt_or_messages, system_prompt)
        return ChunkStream(lambda: self._serve(build, args, options, state))

    def chat_stream(
        self, messages: Iterable[Any], provider: str | None = None, *, callbacks: Sequence[Any] | None = None,
        **options: Any,
    ) -> ChunkStream:
        """`stream(messages, ...)` under spoon_ai's name; `provider` as in `chat()`."""
        return self.stream(messages, callbacks=callbacks, provider=provider, **options)

