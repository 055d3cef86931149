"""Ollama through the official `ollama` SDK: `POST /api/chat`, whole or streamed (NDJSON).

`spec.options` (then `request.options`) go into Ollama's `options` (e.g. `num_ctx`), except
`keep_alive`, which is a top-level field of the request. With no `base_url` the SDK reads
`OLLAMA_HOST` itself. Tool calls come without ids (each gets a fresh one) and tool results
travel with the tool's name; images travel inline (Ollama fetches no URLs).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import BadRequestError, ProviderError
from amaos_llm.history import for_wire
from amaos_llm.providers._http_errors import (
    aiohttp_connection_fault,
    connection_error,
    describe,
    error_for_status,
    malformed_reply,
    timeout_error,
)
from amaos_llm.providers._transport import choose_transport, pool_limits
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
from amaos_llm.types import ToolCall

if TYPE_CHECKING:
    import ollama

    from amaos_llm.types import Message


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

    def _params(self, request: ProviderRequest) -> dict[str, Any]:
        options: dict[str, Any] = {**self.spec.options, **request.options}
        keep_alive = options.pop("keep_alive", None)
        options["temperature"] = request.temperature
        options["num_predict"] = request.max_tokens
        if request.seed is not None:
            options["seed"] = request.seed
        params: dict[str, Any] = {"model": request.model, "messages": wire_messages(request.messages),
                                  "options": options, "keep_alive": keep_alive}
        if request.tools and request.tool_choice != "none":  # Ollama has no tool_choice: "none" omits the tools
            if request.tool_choice != "auto":
                raise BadRequestError(f"{self.spec.provider}: cannot force a tool call (tool_choice "
                                      f"{request.tool_choice!r}); Ollama has no tool_choice")
            params["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                 "parameters": t.parameters}} for t in request.tools]
        if request.response_format is not None:
            params["format"] = request.response_format
        return params

    async def _check_capabilities(self, request: ProviderRequest) -> None:
        """A request with tools or images asks `POST /api/show` (once per model) what the model can
        do: Ollama's own errors are text only, so a missing capability is named here, in the
        structured `unsupported` field feature fallback reads, before the chat is sent."""
        wants_tools = bool(request.tools) and request.tool_choice != "none"
        wants_images = any(m.images for m in request.messages if not isinstance(m.content, str))
        if not (wants_tools or wants_images):
            return
        if self._capabilities is None:
            client = self._client()
            with self._errors():
                shown = await client.show(request.model)
            self._capabilities = frozenset(shown.capabilities) if shown.capabilities else frozenset({"*"})
        caps = self._capabilities
        if "*" in caps:  # a server too old to say: let the chat itself decide
            return
        for wanted, capability, feature in ((wants_tools, "tools", "tools"), (wants_images, "vision", "images")):
            if wanted and capability not in caps:
                raise BadRequestError(f"{self.spec.provider}: model {request.model!r} does not support {feature} "
                                      f"(its capabilities: {', '.join(sorted(caps))})", status_code=400,
                                      unsupported=feature)

    _capabilities: frozenset[str] | None = None

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        await self._check_capabilities(request)
        params = self._params(request)
        client = self._client()
        async with self.http_slots():
            with self._errors():
                reply = await client.chat(**params)
        calls = [_tool_call(c) for c in reply.message.tool_calls or ()]
        return ProviderReply(
            content=reply.message.content or "",
            input_tokens=reply.prompt_eval_count or 0,
            output_tokens=reply.eval_count or 0,
            finish_reason=finish_reason(reply.done_reason, bool(calls)),
            model=reply.model,
            tool_calls=calls,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """NDJSON lines as they arrive, tool calls whole; done only on the `done: true` line, which
        carries the counts."""
        await self._check_capabilities(request)
        params = self._params(request)
        client = self._client()
        async with self.http_slots():
            with self._errors():
                lines = await client.chat(**params, stream=True)
            try:
                last, calls = None, 0
                with MID_STREAM, self._errors():
                    async for part in lines:
                        message = part.message
                        if message.content:
                            yield ProviderChunk(text=message.content)
                        for call in message.tool_calls or ():
                            calls += 1
                            yield ProviderChunk(tool_call=_tool_call(call))
                        if part.done:
                            last = part
            finally:
                await close_shielded(lines.aclose)
        if last is None:
            raise stream_cut(self.spec.provider, "its done line")
        usage = StreamUsage(last.prompt_eval_count or 0, last.eval_count or 0)
        yield ProviderChunk(usage=usage, finish_reason=finish_reason(last.done_reason, calls > 0), model=last.model)

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


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out = []
    for m in for_wire(messages, "ollama"):
        wire: dict[str, Any] = {"role": m.role, "content": m.text}
        images = m.images
        if images:
            if any(p.url is not None for p in images):
                raise BadRequestError("ollama: images must be inline data; Ollama fetches no URLs")
            wire["images"] = [p.data for p in images]  # the SDK sends bytes as base64
        if m.tool_calls:
            wire["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
        if m.role == "tool" and m.name:
            wire["tool_name"] = m.name
        out.append(wire)
    return out


def _tool_call(call: Any) -> ToolCall:
    arguments = call.function.arguments
    if isinstance(arguments, dict):
        return ToolCall(name=call.function.name, arguments=arguments)
    return ToolCall(name=call.function.name, invalid_arguments=json.dumps(arguments))
