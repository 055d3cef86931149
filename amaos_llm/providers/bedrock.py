"""AWS Bedrock's Converse and ConverseStream through `aiobotocore` (the `amaos-llm[bedrock]` extra).

The AWS SDK signs every request (SigV4) with credentials from the standard AWS chain
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, `AWS_PROFILE`, SSO, instance
roles), or sends a Bedrock API key from `AWS_BEARER_TOKEN_BEDROCK` as a bearer token: nothing
about them is in the YAML, the logs or an error message. The spec names one
region (`region`; the manager narrows a `regions:` list to one per target), and `base_url`
replaces the endpoint of both the runtime and the control plane (tests, VPC endpoints).

botocore retries on its own by default (one 503 reached a server five times): its retries are
off, because retries are the manager's. The SDK's timeouts follow `spec.timeout`; the manager's
own deadline applies on top. Input tokens include cache reads and writes, as on the other
providers; `BedrockReply` carries them apart as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.config import region_url
from amaos_llm.errors import ProviderError
from amaos_llm.providers._bedrock_wire import (
    PRICES_PROVIDER,
    REGIONAL_PROFILE_PREFIXES,
    BedrockErrors,
    BedrockReply,
    ToolUseBlocks,
    converse_args,
    end_reason,
    hide_tokens_in_logs,
    is_inference_profile,
    reply_of,
    stream_usage,
)
from amaos_llm.providers._transport import _on_asyncio, pool_size
from amaos_llm.providers.base import Provider, ProviderChunk, ProviderRequest, StreamUsage

if TYPE_CHECKING:
    import anyio

SDK_TIMEOUT = 60.0  # seconds, when the model sets no timeout (botocore's default)
INSTALL_HINT = "pip install 'amaos-llm[bedrock]'"

__all__ = ["BedrockProvider", "BedrockReply", "ProviderChunk", "bedrock_price_id"]


class BedrockProvider(Provider):
    local: ClassVar[bool | None] = False
    key_env: ClassVar[str | None] = None  # the AWS credential chain, not one API key
    key_required: ClassVar[bool] = False

    _control: Any = None  # the `bedrock` control-plane client, built by the first health check
    _building: anyio.Lock | None = None
    _bedrock_errors: BedrockErrors | None = None

    async def complete(self, request: ProviderRequest) -> BedrockReply:
        args = converse_args(request, {**self.spec.options, **request.options})
        client = await self._runtime()
        async with self.http_slots():
            with self._errors():
                response = await client.converse(**args)
        return reply_of(response, request.model, request.response_format is not None)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """ConverseStream's events as chunks: a chunk per text delta, each tool call whole when its
        block stops (a `response_format` answer streams as text: the forced tool's input), then one
        last chunk with the usage (the `metadata` event) and the finish reason (`messageStop`),
        yielded only once both have arrived: a stream that ends without them is a
        `ProviderConnectionError`, never a silently short answer. Leaving early closes the HTTP response."""
        args = converse_args(request, {**self.spec.options, **request.options})
        client = await self._runtime()
        errors = self._errors()
        async with self.http_slots():
            with errors:
                response = await client.converse_stream(**args)
            events = response["stream"]
            stop: dict[str, Any] | None = None  # the messageStop event
            usage: StreamUsage | None = None  # from the metadata event, which comes last
            tools = ToolUseBlocks(request.response_format is not None)
            try:
                with errors:
                    async for event in events:
                        block = event.get("contentBlockDelta")
                        if block is not None:
                            delta = block.get("delta") or {}
                            text = delta.get("text") or tools.delta(block, delta)
                            if text:
                                yield ProviderChunk(text=text)
                        elif "contentBlockStart" in event:
                            tools.start(event["contentBlockStart"])
                        elif "contentBlockStop" in event:
                            call = tools.stop(event["contentBlockStop"])
                            if call is not None:
                                yield ProviderChunk(tool_call=call)
                        elif "messageStop" in event:
                            stop = event["messageStop"]
                        elif "metadata" in event:
                            usage = stream_usage(event["metadata"].get("usage") or {})
            finally:
                events.close()  # at the end, on an error, or when the caller stops early
            if stop is None or usage is None:
                seen = (("messageStop", stop is not None), ("metadata", usage is not None))
                missing = " and ".join(name for name, arrived in seen if not arrived)
                raise errors.cut(f"the stream ended without {missing}")
            finish = end_reason(stop.get("stopReason"), tools.calls)
            yield ProviderChunk(usage=usage, finish_reason=finish, model=request.model)

    async def health(self) -> bool:
        """True when the control plane knows the model (`GetFoundationModel`) or the inference
        profile (`GetInferenceProfile`) with these credentials in this region: nothing is generated."""
        model = self.spec.model
        try:
            client = await self._control_plane()
            with self._errors():
                if is_inference_profile(model):
                    await client.get_inference_profile(inferenceProfileIdentifier=model)
                else:
                    await client.get_foundation_model(modelIdentifier=model)
        except ProviderError:
            return False
        return True

    async def has_credentials(self) -> bool:
        """Whether the AWS chain finds credentials here (never their values): the check a key
        variable gets on the other providers, for a configuration report."""
        from aiobotocore.session import AioSession
        from botocore.utils import get_token_from_environment

        if get_token_from_environment("bedrock"):  # a Bedrock API key, which botocore sends as a bearer token
            return True
        with self._errors():  # an unreadable profile
            return await AioSession().get_credentials() is not None

    async def aclose(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            await self._close_client(control)
        await super().aclose()

    async def _close_client(self, client: Any) -> None:
        await client.__aexit__(None, None, None)  # closes its aiohttp session

    # -- the SDK clients, built on first use ----------------------------------------------------

    async def _runtime(self) -> Any:
        if self._sdk_client is None:
            async with self._lock():
                if self._sdk_client is None:
                    self._sdk_client = await self._new_client("bedrock-runtime")
        return self._sdk_client

    async def _control_plane(self) -> Any:
        if self._control is None:
            async with self._lock():
                if self._control is None:
                    self._control = await self._new_client("bedrock")
        return self._control

    def _lock(self) -> anyio.Lock:
        # two first calls at once must not build (and leak) two clients
        if self._building is None:
            import anyio

            self._building = anyio.Lock()
        return self._building

    async def _new_client(self, service: str) -> Any:
        try:
            from aiobotocore.session import AioSession
            from botocore.config import Config
        except ImportError as exc:  # the optional extra
            raise ImportError(f"the bedrock provider needs aiobotocore: {INSTALL_HINT}") from exc

        if not _on_asyncio():  # aiobotocore sends through aiohttp; its httpx session cannot read event streams
            raise ProviderError("bedrock: aiobotocore runs on asyncio only (this is another event loop)")
        hide_tokens_in_logs()
        timeout = self.spec.timeout or SDK_TIMEOUT
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},  # the manager retries, not botocore
            connect_timeout=timeout, read_timeout=timeout, max_pool_connections=pool_size(self.spec),
        )
        kwargs: dict[str, Any] = {"region_name": self.spec.region, "config": config}
        if self.spec.base_url:
            kwargs["endpoint_url"] = self.spec.base_url
        with self._errors():  # no region anywhere, an unreadable profile
            return await AioSession().create_client(service, **kwargs).__aenter__()

    def _errors(self) -> BedrockErrors:
        if self._bedrock_errors is None:
            region = lambda: self.spec.region  # noqa: E731
            self._bedrock_errors = BedrockErrors(self.spec.model, region, self._url)
        return self._bedrock_errors

    def _url(self) -> str:
        if self.spec.base_url:
            return str(self.spec.base_url)
        client = self._sdk_client
        if client is not None:
            return str(client.meta.endpoint_url)
        return (region_url("bedrock", self.spec.region) if self.spec.region else None) or "bedrock-runtime"


def bedrock_price_id(model_id: str) -> tuple[str, str]:
    """(genai-prices provider id, model id) to price a Bedrock model by: the id as given when
    genai-prices knows it, else without a regional inference-profile prefix (`us.`, `eu.`,
    `apac.`, …). A `global.` profile is priced as itself: its price differs from the model's."""
    from genai_prices import Usage, calc_price  # a large table, loaded only to price

    def known(model: str) -> bool:
        try:
            calc_price(Usage(input_tokens=1), model, provider_id=PRICES_PROVIDER)
        except LookupError:
            return False
        return True

    prefix, dot, rest = model_id.partition(".")
    if dot and prefix in REGIONAL_PROFILE_PREFIXES and not known(model_id) and known(rest):
        return PRICES_PROVIDER, rest
    return PRICES_PROVIDER, model_id
