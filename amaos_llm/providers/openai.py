"""OpenAI chat completions through the official `openai` SDK; serves `openai` and `openai_compatible`.

`openai_compatible` servers (vLLM, llama.cpp, xllamacpp, LM Studio) accept any key, so a missing
one is replaced by a placeholder. The token limit travels as `max_tokens`, which every
compatible server reads; for `openai` itself as `max_completion_tokens`, the name OpenAI's
reasoning models require. `spec.options` (then `request.options`) are sent as extra body fields
(e.g. vLLM's `top_k`). With no `base_url` the SDK reads `OPENAI_BASE_URL` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import ProviderError
from amaos_llm.providers._http_errors import SdkErrors
from amaos_llm.providers._transport import stainless_http_client
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest

if TYPE_CHECKING:
    import openai

    from amaos_llm.types import Message

PLACEHOLDER_KEY = "unused"  # compatible servers want some bearer token, any will do


class OpenAIProvider(Provider):
    key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    key_required: ClassVar[bool] = True

    _sdk_client: openai.AsyncOpenAI | None = None
    _sdk_errors: SdkErrors | None = None  # built once: entered around every SDK call

    def _client(self) -> openai.AsyncOpenAI:
        if self._sdk_client is None:
            import openai

            if self.spec.provider == "openai" or self._api_key is not None:
                key = self.required_key()
            else:
                key = PLACEHOLDER_KEY
            http_client = stainless_http_client(self.spec, openai)
            kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0, "http_client": http_client}
            if self.spec.base_url:
                kwargs["base_url"] = self.spec.base_url
            self._sdk_client = self._new_client(openai, kwargs)
        return self._sdk_client

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        limit = "max_completion_tokens" if self.spec.provider == "openai" else "max_tokens"
        params: dict[str, Any] = {"temperature": request.temperature, limit: request.max_tokens}
        if request.seed is not None:
            params["seed"] = request.seed
        extra = {**self.spec.options, **request.options}
        client = self._client()
        async with self.http_slots():
            with self._errors():
                completion = await client.chat.completions.create(
                    model=request.model,
                    messages=[_wire_message(m) for m in request.messages],
                    extra_body=extra or None,
                    **params,
                )
        choice = completion.choices[0] if completion.choices else None
        usage = completion.usage
        return ProviderReply(
            content=(choice.message.content if choice else None) or "",
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason if choice else None,
            model=completion.model,
        )

    async def health(self) -> bool:
        """True when `GET /models` answers (reachable, key accepted) and lists this model."""
        try:
            client = self._client()
            with self._errors():
                page = await client.models.list()
        except ProviderError:
            return False
        return any(m.id == self.spec.model for m in page.data)

    def _errors(self) -> SdkErrors:
        if self._sdk_errors is None:
            import openai

            url = lambda: str(self._client().base_url)  # noqa: E731  (read only when a connection fails)
            self._sdk_errors = SdkErrors(openai, self.spec.provider, self.redact, url)
        return self._sdk_errors

    def _new_client(self, sdk: Any, kwargs: dict[str, Any]) -> openai.AsyncOpenAI:
        """The SDK client from the common arguments; a subclass on another endpoint (Azure) overrides it."""
        return sdk.AsyncOpenAI(**kwargs)


def _wire_message(message: Message) -> dict[str, str]:
    # A `tool` message needs a tool_call_id the plain-text contract does not carry: send it as user text.
    role = "user" if message.role == "tool" else message.role
    return {"role": role, "content": message.content}
