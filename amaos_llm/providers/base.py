"""The provider contract: one wire, one small class.

A provider turns a `ProviderRequest` into its SDK's call and the SDK's reply into a
`ProviderReply` with the token counts the server reported. It builds its SDK client lazily (so
`local_only` never constructs a cloud client), maps the SDK's exceptions to `amaos_llm.errors`
at this boundary, and does nothing else: no retries, no fallback, no pricing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from amaos_llm.errors import AuthenticationError, ProviderConnectionError
from amaos_llm.providers._slots import Slots
from amaos_llm.providers._transport import pool_limits, pool_size

if TYPE_CHECKING:
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec
    from amaos_llm.tools import Tool
    from amaos_llm.types import Message, ToolCall

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


# Request and reply are made on every call: not frozen, since a frozen init costs three times as much.
@dataclass(slots=True)
class ProviderRequest:
    messages: Sequence[Message]
    model: str  # the provider's model id
    temperature: float
    max_tokens: int
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    tools: Sequence[Tool] = ()
    tool_choice: str = "auto"  # "auto" | "required" | "none" | a tool's name
    response_format: dict[str, Any] | None = None  # an object JSON schema the reply must follow


@dataclass(slots=True)
class ProviderReply:
    """One whole reply. `input_tokens` includes `cache_read_tokens` and `cache_write_tokens` (all of
    them are billed as input, at their own prices); `finish_reason` is normalised (`FinishReason`)."""

    content: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    model: str | None = None  # the model id the server says answered
    tool_calls: Sequence[ToolCall] = ()
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """Token counts a stream reported, as `ProviderReply` counts them (input includes the cache)."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(slots=True)  # not frozen: made for every streamed piece, and a frozen init costs twice as much
class ProviderChunk:
    """One piece of a streamed reply; the fields that piece does not carry are empty.

    `text`: a delta (empty on a chunk that carries only usage or a call). `tool_call`: one whole call
    (fragments are joined by the provider). `usage`: the counts the wire has reported so far, each a
    replacement of the last (wires report usage cumulatively); it may ride on a text chunk or come
    alone, and arrives as early as the wire says it (Anthropic's `message_start`, Gemini's chunks), so
    that a stream broken later still counts what was billed.
    `finish_reason`: on the last chunk only, which a provider yields only after the wire's end marker:
    a stream that ends without one raises `ProviderConnectionError` instead."""

    text: str = ""
    tool_call: ToolCall | None = None
    usage: StreamUsage | None = None
    finish_reason: FinishReason | None = None
    model: str | None = None  # the model id the server says answers, on the last chunk


class Provider(ABC):
    """Base of every provider. Subclasses set the class attributes the registry reads for
    plugins (`local`, `key_env`, `key_required`) and implement `complete`."""

    local: ClassVar[bool | None] = False
    key_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec, api_key: SecretStr | None = None) -> None:
        self.spec = spec
        self._api_key = api_key

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(model={self.spec.model!r}, base_url={self.spec.base_url!r})"

    @abstractmethod
    async def complete(self, request: ProviderRequest) -> ProviderReply:
        """One request, one reply with real usage; raise `ProviderError` subclasses on failure."""

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """The reply as it is generated, ending with one chunk that has `finish_reason` (and the usage).
        The consumer must `aclose()` a stream it leaves unfinished: that is what closes the HTTP
        response (or stops a local generation) at once and frees the pool slot.

        This default, for providers that cannot stream, is the whole reply from `complete()` as one
        text chunk, one chunk per tool call, then the usage and finish."""
        reply = await self.complete(request)
        if reply.content:
            yield ProviderChunk(text=reply.content)
        for call in reply.tool_calls:
            yield ProviderChunk(tool_call=call)
        usage = StreamUsage(reply.input_tokens, reply.output_tokens, reply.cache_read_tokens, reply.cache_write_tokens)
        yield ProviderChunk(usage=usage, finish_reason=finish_reason(reply.finish_reason, bool(reply.tool_calls)),
                            model=reply.model)

    async def health(self) -> bool:
        """Cheap reachability check (no generation). Default: assume reachable."""
        return True

    # Kept when the manager closes its clients (a registered function: nothing to close or rebuild).
    keeps_on_close: ClassVar[bool] = False

    # An in-process model not loaded yet: the manager loads it (`warm_up`) outside the reply's timeout.
    needs_load: bool = False

    async def warm_up(self) -> bool:
        """Get the model ready to answer without generating; default: the health check."""
        return await self.health()

    # The SDK client, built lazily by the subclass on first use; `aclose` closes it.
    _sdk_client: Any = None

    async def aclose(self) -> None:
        """Release the SDK client (safe to call twice). Providers holding more override this."""
        if self._sdk_client is not None:
            client, self._sdk_client = self._sdk_client, None
            await self._close_client(client)

    async def _close_client(self, client: Any) -> None:
        await client.close()

    # The FIFO gate in front of the HTTP pool, one slot per connection (see `_transport`).
    _slots: Slots | None = None

    def http_slots(self) -> Slots:
        """The gate of the pool's size that every generation call of an HTTP provider holds while
        it runs: calls beyond the pool wait here in arrival order. Built on first use."""
        if self._slots is None:
            self._slots = Slots(pool_size(self.spec))
        return self._slots

    def http_limits(self, httpx_module: Any) -> Any:
        """`httpx_module.Limits` for the SDK's pool: `max_connections` (default 1,000), all kept alive."""
        return pool_limits(self.spec, httpx_module)

    def required_key(self) -> str:
        """The API key, or an `AuthenticationError` naming the variable to set."""
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        if not key:
            raise AuthenticationError(f"{self.spec.provider}: no API key; set {self.spec.api_key_env}")
        return key

    def redact(self, text: str) -> str:
        """Error text with this provider's key removed, for messages that echo what was sent."""
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            if len(secret) >= 8:  # a toy key like "k" would mangle ordinary words
                text = text.replace(secret, "***")
        return text


# Each wire's spelling of why a reply ended, as one of `FinishReason`.
_FINISH: dict[str, FinishReason] = {
    "stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "STOP": "stop", "pause_turn": "stop",
    "length": "length", "max_tokens": "length", "MAX_TOKENS": "length", "model_context_window_exceeded": "length",
    "tool_calls": "tool_calls", "tool_use": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter", "refusal": "content_filter", "SAFETY": "content_filter",
    "RECITATION": "content_filter", "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter", "IMAGE_SAFETY": "content_filter",
    "content_filtered": "content_filter", "guardrail_intervened": "content_filter",  # Bedrock's Converse
}


def finish_reason(wire_reason: str | None, has_tool_calls: bool = False) -> FinishReason:
    """`wire_reason` normalised; a reply that calls tools ends in `tool_calls` whatever the wire said
    (Gemini and Ollama say STOP/stop), and an unknown or missing reason is `stop`."""
    if has_tool_calls:
        return "tool_calls"
    return _FINISH.get(wire_reason or "stop", "stop")


def stream_cut(provider: str, missing: str) -> ProviderConnectionError:
    """A stream that closed cleanly but without its wire's end marker: never taken as a whole reply
    (no silent truncation). The request had gone out, so a second try may pass."""
    return ProviderConnectionError(f"{provider}: stream ended without {missing}: the reply was cut", connected=True)


async def close_shielded(closer: Callable[[], Awaitable[Any]]) -> None:
    """Close a streamed HTTP response even while the consumer is being cancelled: an abandoned
    stream must free its connection at once, not when the garbage collector gets to it."""
    import anyio

    with anyio.CancelScope(shield=True):
        await closer()


class MidStream:
    """Entered around reading a stream's body: a connection lost there was lost after the request
    went out (the reply had begun), so it is marked `connected`, worth a second try."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, ProviderConnectionError) and not exc.connected:
            exc.connected = exc.retryable = True


MID_STREAM = MidStream()
