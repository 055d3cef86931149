"""Anthropic Messages through the official `anthropic` SDK.

System messages are joined into the top-level `system` field. anthropic 2.12's `messages.create`
has no `temperature` parameter, so it travels in `extra_body` (with `spec.options`, then
`request.options`, e.g. `top_k`); 0.0 reaches the wire. The API has no seed. Input tokens count
cache reads and cache writes too, because they are billed as input. With no `base_url` the SDK
reads `ANTHROPIC_BASE_URL` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import ProviderError
from amaos_llm.providers._http_errors import SdkErrors
from amaos_llm.providers._transport import stainless_http_client
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest

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

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [
            # a `tool` message without a tool_use_id can only travel as user text
            {"role": "assistant" if m.role == "assistant" else "user", "content": m.content}
            for m in request.messages
            if m.role != "system"
        ]
        extra = {**self.spec.options, **request.options, "temperature": request.temperature}
        client = self._client()
        async with self.http_slots():
            with self._errors():
                message = await client.messages.create(
                    model=request.model,
                    max_tokens=request.max_tokens,
                    messages=messages,  # type: ignore[arg-type]
                    **({"system": system} if system else {}),
                    extra_body=extra,
                )
        usage = message.usage
        cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
        return ProviderReply(
            content="".join(block.text for block in message.content if block.type == "text"),
            input_tokens=usage.input_tokens + cached,
            output_tokens=usage.output_tokens,
            finish_reason=message.stop_reason,
            model=message.model,
        )

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
