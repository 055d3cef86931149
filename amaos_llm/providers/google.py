"""Gemini through the official `google-genai` SDK (`client.aio.models.generate_content`).

System messages become `system_instruction`; assistant turns have role `model`. `spec.options`
(then `request.options`) are extra `GenerateContentConfig` fields (e.g. `top_k`). Output tokens
include thinking tokens, which are billed as output. With no `base_url` the SDK reads
`GOOGLE_GEMINI_BASE_URL` itself.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import AsyncGeneratorType
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import BadRequestError, ProviderError
from amaos_llm.providers._google_wire import config_fields, read_parts, usage_counts, wire_contents
from amaos_llm.providers._http_errors import (
    body_message,
    connection_error,
    describe,
    error_for_status,
    malformed_reply,
    retry_after_seconds,
    timeout_error,
)
from amaos_llm.providers._transport import choose_transport, pool_limits, pool_size
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
    import aiohttp
    from google import genai
    from google.genai import types


class GoogleProvider(Provider):
    key_env: ClassVar[str | None] = "GOOGLE_API_KEY"
    key_required: ClassVar[bool] = True

    # Held for the provider's life: calls through a dropped `genai.Client` fail as "client closed".
    _sdk_client: genai.Client | None = None
    _session: aiohttp.ClientSession | None = None  # ours when on aiohttp: the SDK leaves it open

    def _client(self) -> genai.Client:
        if self._sdk_client is None:
            import httpx2
            from google import genai
            from google.genai import types

            key = self.required_key()
            # No retries of its own: on aiohttp, without retry options, the SDK silently sends a
            # request again 1-10 s after a connection error.
            options: dict[str, Any] = {"retry_options": types.HttpRetryOptions(attempts=1)}
            if self.spec.base_url:
                options["base_url"] = self.spec.base_url
            if choose_transport(self.spec) == "aiohttp":
                # Our own session: the SDK's would have no connection limit (and is built from a
                # subclass of ClientSession, which aiohttp deprecates with a warning).
                import aiohttp

                connector = aiohttp.TCPConnector(limit=pool_size(self.spec))
                self._session = aiohttp.ClientSession(connector=connector, trust_env=True)
                options["aiohttp_client"] = self._session
            else:
                # An explicit transport is how google-genai is told to stay on httpx2 although
                # aiohttp is installed (e.g. under trio, or with http_transport: default).
                limits = pool_limits(self.spec, httpx2)
                options["async_client_args"] = {"transport": httpx2.AsyncHTTPTransport(limits=limits)}
            self._sdk_client = genai.Client(api_key=key, http_options=types.HttpOptions(**options))
        return self._sdk_client

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        client = self._client()
        config = self._config(request)
        contents = wire_contents(request.messages)
        async with self.http_slots():
            with self._errors():
                response = await client.aio.models.generate_content(
                    model=request.model,
                    contents=contents,  # type: ignore[arg-type]
                    config=config,
                )
        candidate = response.candidates[0] if response.candidates else None
        parts = (candidate.content.parts if candidate and candidate.content else None) or []
        text, calls = read_parts(parts)
        finish = candidate.finish_reason if candidate else None
        input_tokens, output_tokens, cached = usage_counts(response.usage_metadata)
        return ProviderReply(
            content=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=finish_reason(finish.value if finish is not None else None, bool(calls)),
            model=response.model_version,
            tool_calls=calls,
            cache_read_tokens=cached,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """Chunks as they arrive (text deltas, whole function calls); done only on a chunk with a
        `finishReason`. Usage is the last `usageMetadata` seen (each chunk's is cumulative)."""
        client = self._client()
        config = self._config(request)
        contents = wire_contents(request.messages)
        async with self.http_slots():
            with self._errors():
                stream = await client.aio.models.generate_content_stream(
                    model=request.model,
                    contents=contents,  # type: ignore[arg-type]
                    config=config,
                )
            try:
                usage, finish, model, calls = None, None, None, 0
                reported: StreamUsage | None = None
                with MID_STREAM, self._errors():
                    async for response in stream:
                        # Each chunk's usageMetadata is cumulative; a text chunk carries it when it
                        # changed, so that a stream that breaks later still counts what was billed.
                        counts = None
                        if response.usage_metadata is not None:
                            usage = response.usage_metadata
                            counts = StreamUsage(*usage_counts(usage))
                            if counts == reported:
                                counts = None
                        candidate = response.candidates[0] if response.candidates else None
                        parts = (candidate.content.parts if candidate and candidate.content else None) or []
                        text, found = read_parts(parts)
                        if text or counts is not None:
                            reported = counts or reported
                            yield ProviderChunk(text=text, usage=counts)
                        if candidate is None:
                            continue
                        for call in found:
                            calls += 1
                            yield ProviderChunk(tool_call=call)
                        if candidate.finish_reason is not None:
                            finish, model = candidate.finish_reason.value, response.model_version
            finally:
                await close_shielded(lambda: _close_stream(stream))
        if finish is None:
            raise stream_cut(self.spec.provider, "a finishReason")
        input_tokens, output_tokens, cached = usage_counts(usage)
        yield ProviderChunk(usage=StreamUsage(input_tokens, output_tokens, cached),
                            finish_reason=finish_reason(finish, calls > 0), model=model)

    def _config(self, request: ProviderRequest) -> types.GenerateContentConfig:
        import pydantic
        from google.genai import types

        system = "\n\n".join(m.text for m in request.messages if m.role == "system")
        fields: dict[str, Any] = {
            **self.spec.options,
            **request.options,
            "temperature": request.temperature,
            "max_output_tokens": request.max_tokens,
            **config_fields(request),
        }
        if system:
            fields["system_instruction"] = system
        if request.seed is not None:
            fields["seed"] = request.seed
        try:
            return types.GenerateContentConfig(**fields)
        except pydantic.ValidationError as exc:
            raise BadRequestError(f"{self.spec.provider}: invalid options: {self.redact(str(exc))}") from exc

    async def health(self) -> bool:
        """True when `GET models/{model}` answers (reachable, key accepted, model known)."""
        try:
            client = self._client()
            with self._errors():
                await client.aio.models.get(model=self.spec.model)
        except ProviderError:
            return False
        return True

    def _base_url(self) -> str:
        # google-genai has no public accessor; its client settles on base_url, $GOOGLE_GEMINI_BASE_URL
        # or its default, and keeps the result in its http options.
        return str(self._client()._api_client._http_options.base_url)

    async def _close_client(self, client: genai.Client) -> None:
        await client.aio.aclose()
        client.close()  # the sync transport is built eagerly too
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SDK exceptions → `amaos_llm.errors`. google-genai lets raw transport errors escape for
        refused, reset and cut connections: `httpx2`'s, or `aiohttp`'s when that is installed (the
        SDK then sends through it); an error chunk mid-stream raises `ServerError` 503."""
        import httpx2
        from google.genai import errors

        # Not imported here: google-genai imports aiohttp when it is installed, so an aiohttp error can
        # only be raised when the module is already loaded.
        aiohttp = sys.modules.get("aiohttp")
        aio_timeouts = (aiohttp.ServerTimeoutError,) if aiohttp is not None else ()
        # a reply cut off mid-body is a ClientPayloadError, not a ClientConnectionError
        aio_connections = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) if aiohttp is not None else ()
        name = self.spec.provider
        try:
            yield
        except errors.APIError as exc:
            headers = exc.response.headers if exc.response is not None else None
            raise error_for_status(
                name, exc.code, self.redact(body_message(exc.details)), retry_after_seconds(headers), exc.details
            ) from exc
        # Timeouts first: aiohttp's ServerTimeoutError is a ClientConnectionError too. A bare
        # TimeoutError is aiohttp's total timeout (asyncio.TimeoutError).
        except (httpx2.TimeoutException, TimeoutError, *aio_timeouts) as exc:
            raise timeout_error(name, self.redact(describe(exc))) from exc
        except (httpx2.TransportError, ConnectionError, *aio_connections) as exc:
            raise connection_error(name, self.redact(describe(exc)), url=self.redact(self._base_url()),
                                   cause=exc) from exc
        except (errors.UnknownApiResponseError, json.JSONDecodeError) as exc:
            raise malformed_reply(name, self.redact(describe(exc))) from exc


async def _close_stream(stream: Any) -> None:
    """Close google-genai's stream and the HTTP response under it. Closing the SDK's generator is not
    enough: its `HttpResponse` and the generator reading the body hold each other (a reference
    cycle), so the body's own generator, and with it the connection, would stay open until the
    garbage collector's next full pass. The response is found in the suspended generators' locals;
    should a new SDK version hide it, the connection is left to the collector as before."""
    responses = []
    pending, seen = [stream], set()
    while pending:
        agen = pending.pop()
        frame = getattr(agen, "ag_frame", None)
        if frame is None or id(agen) in seen:
            continue
        seen.add(id(agen))
        for value in frame.f_locals.values():
            if isinstance(value, AsyncGeneratorType):
                pending.append(value)
            body = getattr(value, "response_stream", None)  # google-genai's HttpResponse
            if body is not None and not isinstance(body, (list, str)):
                responses.append(body)
    await stream.aclose()
    for body in responses:
        closed = body.aclose() if hasattr(body, "aclose") else body.close()  # httpx2, else aiohttp (sync)
        if inspect.isawaitable(closed):
            await closed
