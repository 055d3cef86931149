"""Anthropic Messages through the official `anthropic` SDK.

System messages are joined into the top-level `system` field. anthropic 2.12's `messages.create`
has no `temperature` parameter, so it travels in `extra_body` (with `spec.options`, then
`request.options`, e.g. `top_k`); 0.0 reaches the wire. The API has no seed. Input tokens count
cache reads and cache writes too, because they are billed as input. With no `base_url` the SDK
reads `ANTHROPIC_BASE_URL` itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import ProviderError
from amaos_llm.providers._anthropic_wire import RESPONSE_TOOL, UsageCounts, request_params, response_json
from amaos_llm.providers._http_errors import SdkErrors
from amaos_llm.providers._tool_calls import tool_call
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
from amaos_llm.types import ToolCall

if TYPE_CHECKING:
    import anthropic


class AnthropicProvider(Provider):
    key_env: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    key_required: ClassVar[bool] = True

    _sdk_client: anthropic.AsyncAnthropic | None = None
    _sdk_errors: SdkErrors | None = None  # built once: entered around every SDK call

    def _client(self) -> anthropic.AsyncAnthropic:
        if self._sdk_client is None:
            import anthropic

            key = self.required_key()
            http_client = stainless_http_client(self.spec, anthropic)
            kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0, "http_client": http_client}
            if self.spec.base_url:
                kwargs["base_url"] = self.spec.base_url
            self._sdk_client = anthropic.AsyncAnthropic(**kwargs)
        return self._sdk_client

    def _params(self, request: ProviderRequest) -> dict[str, Any]:
        extra = {**self.spec.options, **request.options, "temperature": request.temperature}
        return {"model": request.model, "max_tokens": request.max_tokens, **request_params(request),
                "extra_body": extra}

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        params = self._params(request)
        client = self._client()
        async with self.http_slots():
            with self._errors():
                message = await client.messages.create(**params)
        texts, calls = [], []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                if block.name == RESPONSE_TOOL and request.response_format is not None:
                    texts.append(response_json(block.input))
                else:
                    calls.append(_tool_use(block))
        usage = UsageCounts()
        usage.update(message.usage)
        stop_reason = message.stop_reason
        if stop_reason == "tool_use" and not calls:
            stop_reason = "end_turn"  # the forced answer tool is the reply, not a call to run
        return ProviderReply(
            content="".join(texts),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output,
            finish_reason=finish_reason(stop_reason, bool(calls)),
            model=message.model,
            tool_calls=calls,
            cache_read_tokens=usage.cache_read,
            cache_write_tokens=usage.cache_write,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """Text deltas as they arrive, each tool call whole at its block's end; done only on
        `message_stop`. A `response_format` answer streams as text (the forced tool's JSON)."""
        params = self._params(request)
        client = self._client()
        async with self.http_slots():
            with self._errors():
                stream = await client.messages.create(**params, stream=True)
            try:
                usage, stop_reason, model, done, calls = UsageCounts(), None, None, False, 0
                blocks: dict[int, list[Any]] = {}  # index -> [id, name, JSON pieces] of a tool_use block
                answer_index = -1  # the block of the structured-output tool, whose JSON is the text
                with MID_STREAM, self._errors():
                    async for event in stream:
                        kind = event.type
                        if kind == "content_block_delta":
                            delta = event.delta
                            if delta.type == "text_delta":
                                if delta.text:
                                    yield ProviderChunk(text=delta.text)
                            elif delta.type == "input_json_delta" and delta.partial_json:
                                if event.index == answer_index:
                                    yield ProviderChunk(text=delta.partial_json)
                                elif event.index in blocks:
                                    blocks[event.index][2].append(delta.partial_json)
                        elif kind == "content_block_start":
                            block = event.content_block
                            if block.type == "tool_use":
                                if block.name == RESPONSE_TOOL and request.response_format is not None:
                                    answer_index = event.index
                                else:
                                    blocks[event.index] = [block.id, block.name, []]
                        elif kind == "content_block_stop":
                            entry = blocks.pop(event.index, None)
                            if entry is not None:
                                calls += 1
                                yield ProviderChunk(tool_call=tool_call(entry[0], entry[1], "".join(entry[2])))
                        elif kind == "message_start":
                            usage.update(event.message.usage)
                            model = event.message.model
                            # billed from here on even if the stream breaks: the caller counts it then
                            yield ProviderChunk(usage=StreamUsage(usage.input_tokens, usage.output,
                                                                  usage.cache_read, usage.cache_write))
                        elif kind == "message_delta":
                            usage.update(event.usage)
                            stop_reason = event.delta.stop_reason
                        elif kind == "message_stop":
                            done = True
            finally:
                await close_shielded(stream.close)
        if not done:
            raise stream_cut(self.spec.provider, "message_stop")
        counts = StreamUsage(usage.input_tokens, usage.output, usage.cache_read, usage.cache_write)
        if answer_index >= 0 and calls == 0:
            stop_reason = "end_turn"  # the forced answer tool is the reply, not a call to run
        yield ProviderChunk(usage=counts, finish_reason=finish_reason(stop_reason, calls > 0), model=model)

    async def health(self) -> bool:
        """True when `GET /v1/models/{model}` knows this model (reachable, key accepted; aliases
        such as `claude-3-5-haiku-latest` resolve there, while the list names only dated ids)."""
        try:
            client = self._client()
            with self._errors():
                await client.models.retrieve(self.spec.model)
        except ProviderError:
            return False
        return True

    def _errors(self) -> SdkErrors:
        if self._sdk_errors is None:
            import anthropic

            url = lambda: str(self._client().base_url)  # noqa: E731  (read only when a connection fails)
            self._sdk_errors = SdkErrors(anthropic, self.spec.provider, self.redact, url)
        return self._sdk_errors


def _tool_use(block: Any) -> ToolCall:
    if isinstance(block.input, dict):
        return ToolCall(id=block.id, name=block.name, arguments=block.input)
    return ToolCall(id=block.id, name=block.name, invalid_arguments=json.dumps(block.input))
