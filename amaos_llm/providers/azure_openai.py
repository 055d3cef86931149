"""Azure OpenAI: the `openai` provider's adapter on `openai.AsyncAzureOpenAI`.

Only the client differs: `azure_endpoint` is the YAML `base_url` (else `$AZURE_OPENAI_ENDPOINT`),
`api_version` is required (Azure refuses a request without one), `model` is the deployment name,
and the key (`$AZURE_OPENAI_API_KEY`) travels in the `api-key` header. Requests, replies, usage and
errors are the openai provider's own code. Prices: genai-prices' `azure` provider by
`pricing_model` (the model the deployment runs), else by the deployment name.

With `auth: entra_id` no key is sent: a Microsoft Entra ID bearer token is, as
`Authorization: Bearer`. It is `$AZURE_OPENAI_AD_TOKEN` when set (a token fetched beforehand, e.g.
by `az account get-access-token`), else one that azure-identity's `DefaultAzureCredential` gets for
the Cognitive Services scope (environment service principal, workload or managed identity, the
Azure CLI, ...) and renews before it expires: the `amaos-llm[azure]` extra. The token is never in
an error message, a repr or a log line of ours.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import AuthenticationError, ConfigError, ProviderError
from amaos_llm.providers._http_errors import MAX_MESSAGE
from amaos_llm.providers.openai import OpenAIProvider

if TYPE_CHECKING:
    import openai
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec

ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"  # read by the SDK when the model has no base_url
PRICES_PROVIDER = "azure"  # genai-prices' id
TOKEN_ENV = "AZURE_OPENAI_AD_TOKEN"  # a static Entra ID token (the SDK's own variable)
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
ENTRA_HINT = f"pip install 'amaos-llm[azure]' (azure-identity's DefaultAzureCredential) or set ${TOKEN_ENV}"


class AzureOpenAIProvider(OpenAIProvider):
    key_env: ClassVar[str | None] = "AZURE_OPENAI_API_KEY"
    key_required: ClassVar[bool] = True

    _credential: Any = None  # azure-identity's async credential (auth: entra_id), closed with the client
    _token_source: Callable[[], Awaitable[str]] | None = None  # gets a token through it
    _tokens_seen: tuple[str, ...] = ()  # the Entra ID tokens sent, kept out of error messages

    def __init__(self, spec: ModelSpec, api_key: SecretStr | None = None) -> None:
        # Checked before anything is sent: without them no request can be right.
        if not spec.api_version:
            raise ConfigError("azure_openai needs `api_version:` (e.g. 2024-10-21)", field=f"{spec.name}.api_version")
        if not spec.base_url and not os.environ.get(ENDPOINT_ENV):
            raise ConfigError(f"azure_openai needs `base_url:` (https://RESOURCE.openai.azure.com) or ${ENDPOINT_ENV}",
                              field=f"{spec.name}.base_url")
        super().__init__(spec, api_key)

    def _new_client(self, sdk: Any, kwargs: dict[str, Any]) -> openai.AsyncAzureOpenAI:
        # Azure builds its URL from the endpoint; the openai adapter's placeholder key is for local servers only
        common = {k: v for k, v in kwargs.items() if k not in ("base_url", "api_key")}
        auth = self._entra_auth() if self.spec.auth == "entra_id" else {"api_key": self.required_key()}
        return sdk.AsyncAzureOpenAI(azure_endpoint=self.spec.base_url, api_version=self.spec.api_version, **auth,
                                    **common)

    def _entra_auth(self) -> dict[str, Any]:
        """The SDK's Entra ID argument: the static token, else a token provider over azure-identity.
        Passing one explicitly also keeps the SDK from falling back to $AZURE_OPENAI_API_KEY."""
        token = os.environ.get(TOKEN_ENV)
        if token:
            self._tokens_seen = (token,)
            return {"azure_ad_token": token}
        try:
            from azure.core.exceptions import AzureError
            from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider
        except ImportError:
            raise AuthenticationError(f"azure_openai: auth: entra_id needs a token: {ENTRA_HINT}") from None
        self._credential = DefaultAzureCredential()
        fetch = get_bearer_token_provider(self._credential, ENTRA_SCOPE)

        async def token_source() -> str:
            try:
                token = await fetch()
            except AzureError as exc:  # no credential in the chain worked, or the identity endpoint failed
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:MAX_MESSAGE]
                raise AuthenticationError(f"azure_openai: no Entra ID token ({ENTRA_HINT}): {detail}") from exc
            if token not in self._tokens_seen:
                self._tokens_seen = (*self._tokens_seen[-1:], token)  # the current one and the one it renewed
            return token

        self._token_source = token_source
        return {"azure_ad_token_provider": token_source}

    def redact(self, text: str) -> str:
        text = super().redact(text)
        for token in self._tokens_seen:
            text = text.replace(token, "***")
        return text

    async def has_credentials(self) -> bool:
        """Whether this model can authenticate, never showing how: its key is set, or (Entra ID) a
        token is there: $AZURE_OPENAI_AD_TOKEN, or one azure-identity's chain gets now."""
        if self.spec.auth != "entra_id":
            return self._api_key is not None
        try:
            self._client()  # raises when no token source is installed
            if self._token_source is not None:
                await self._token_source()
        except AuthenticationError:
            return False
        return True

    async def health(self) -> bool:
        """True when `GET /openai/models` answers (reachable, key accepted). It lists base models,
        not deployments, so the deployment name cannot be looked for there."""
        try:
            client = self._client()
            with self._errors():
                await client.models.list()
        except ProviderError:
            return False
        return True

    async def aclose(self) -> None:
        credential, self._credential, self._token_source = self._credential, None, None
        await super().aclose()
        if credential is not None:
            await credential.close()  # its HTTP session to the identity endpoint


def azure_price_id(spec: ModelSpec) -> tuple[str, str]:
    """(genai-prices provider id, model id) to price an Azure deployment by."""
    return PRICES_PROVIDER, spec.pricing_model or spec.model
