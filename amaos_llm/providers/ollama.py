"""Ollama through the official `ollama` SDK: `POST /api/chat`, non-streaming.

`spec.options` (then `request.options`) go into Ollama's `options` (e.g. `num_ctx`), except
`keep_alive`, which is a top-level field of the request. With no `base_url` the SDK reads
`OLLAMA_HOST` itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import ProviderError
from amaos_llm.providers._http_errors import (
    aiohttp_connection_fault,
    connection_error,
    describe,
    error_for_status,
    malformed_reply,
    timeout_error,
)
from amaos_llm.providers._transport import choose_transport, pool_limits
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest

if TYPE_CHECKING:
    import ollama


class OllamaProvider(Provider):
    local: ClassVar[bool | None] = True

    _sdk_client: ollama.AsyncClient | None = None

    def _client(self) -> ollama.AsyncClient:
        if self._sdk_client is None:
            import httpx
            import ollama

            # ollama passes extra arguments on to its httpx client; a transport replaces httpx's
            # own pool, so the limits go to the transport then.
            limits = pool_limits(self.spec, httpx)
            if choose_transport(self.spec, "httpx_aiohttp") == "aiohttp":
                from httpx_aiohttp import AiohttpTransport

                extra: dict[str, Any] = {"transport": AiohttpTransport(limits=limits)}
            else:
                extra = {"limits": limits}
            self._sdk_client = ollama.AsyncClient(host=self.spec.base_url, **extra)
        return self._sdk_client

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        options: dict[str, Any] = {**self.spec.options, **request.options}
        keep_alive = options.pop("keep_alive", None)
        options["temperature"] = request.temperature
        options["num_predict"] = request.max_tokens
        if request.seed is not None:
            options["seed"] = request.seed
        client = self._client()
        async with self.http_slots():
            with self._errors():
                reply = await client.chat(
                    model=request.model,
                    messages=[{"role": m.role, "content": m.content} for m in request.messages],
                    options=options,
                    keep_alive=keep_alive,
                )
        return ProviderReply(
            content=reply.message.content or "",
            input_tokens=reply.prompt_eval_count or 0,
            output_tokens=reply.eval_count or 0,
            finish_reason=reply.done_reason,
            model=reply.model,
        )

    async def health(self) -> bool:
        """True when the server answers `/api/tags` and lists this model."""
        client = self._client()
        try:
            with self._errors():
                listed = await client.list()
        except ProviderError:
            return False
        wanted = self.spec.model
        names = {m.model for m in listed.models if m.model}
        # Ollama stores "llama3" as "llama3:latest".
        return wanted in names or (":" not in wanted and f"{wanted}:latest" in names)

    async def warm_up(self) -> bool:
        """Ask the server to load the model: `POST /api/chat` with no messages generates nothing."""
        client = self._client()
        with self._errors():
            reply = await client.chat(model=self.spec.model, messages=[])
        return bool(reply.done)

    def _base_url(self) -> str:
        # The SDK has no public accessor; the httpx client it wraps holds the host it settled on
        # (base_url, $OLLAMA_HOST or its default).
        return str(self._client()._client.base_url)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SDK exceptions → `amaos_llm.errors`. Ollama lets builtin `ConnectionError` (refused) and
        raw httpx errors (reset, cut) escape, on aiohttp too (its transport raises httpx's errors);
        `Retry-After` is not readable through the SDK."""
        import httpx
        import ollama
        import pydantic

        name = self.spec.provider
        try:
            yield
        except ollama.ResponseError as exc:
            raise error_for_status(name, exc.status_code, self.redact(str(exc.error))) from exc
        except httpx.TimeoutException as exc:
            fault = aiohttp_connection_fault(exc)
            if fault is not None:
                raise connection_error(name, self.redact(describe(fault)), url=self.redact(self._base_url()),
                                       cause=fault) from exc
            raise timeout_error(name, self.redact(describe(exc))) from exc
        except (httpx.TransportError, ConnectionError) as exc:
            raise connection_error(name, self.redact(describe(exc)), url=self.redact(self._base_url()),
                                   cause=exc) from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise malformed_reply(name, self.redact(describe(exc))) from exc
