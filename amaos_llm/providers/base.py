"""The provider contract: one wire, one small class.

A provider turns a `ProviderRequest` into its SDK's call and the SDK's reply into a
`ProviderReply` with the token counts the server reported. It builds its SDK client lazily (so
`local_only` never constructs a cloud client), maps the SDK's exceptions to `amaos_llm.errors`
at this boundary, and does nothing else: no retries, no fallback, no pricing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import AuthenticationError
from amaos_llm.providers._transport import pool_limits, pool_size

if TYPE_CHECKING:
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec
    from amaos_llm.types import Message, Usage


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    messages: Sequence[Message]
    model: str  # the provider's model id
    temperature: float
    max_tokens: int
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderChunk:
    """One piece of a streamed reply: a text delta, a whole tool call, and/or the usage so far
    (the latest report wins) and the finish reason, which only the end marker carries."""

    text: str = ""
    tool_call: Any = None
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderReply:
    content: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    model: str | None = None  # the model id the server says answered


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
        """The reply in pieces, ending with a chunk that carries the finish reason (the wire's end
        marker); a stream that stops without one raises `ProviderConnectionError`. Default: the
        whole reply from `complete()` as one text chunk, then the end."""
        reply = await self.complete(request)
        if reply.content:
            yield ProviderChunk(text=reply.content)
        from amaos_llm.types import Usage

        yield ProviderChunk(usage=Usage(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens),
                            finish_reason=reply.finish_reason or "stop")

    async def health(self) -> bool:
        """Cheap reachability check (no generation). Default: assume reachable."""
        return True

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
    _slots: Any = None

    def http_slots(self) -> Any:
        """An `anyio.Semaphore` of the pool's size that every generation call of an HTTP provider
        holds while it runs: calls beyond the pool wait here in arrival order. Built on first use."""
        if self._slots is None:
            import anyio

            # fast_acquire: a free slot is taken without a trip through the event loop
            self._slots = anyio.Semaphore(pool_size(self.spec), fast_acquire=True)
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
