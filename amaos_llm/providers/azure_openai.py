"""Azure OpenAI: the `openai` provider's adapter on `openai.AsyncAzureOpenAI`.

Only the client differs: `azure_endpoint` is the YAML `base_url` (else `$AZURE_OPENAI_ENDPOINT`),
`api_version` is required (Azure refuses a request without one), `model` is the deployment name,
and the key (`$AZURE_OPENAI_API_KEY`) travels in the `api-key` header. Requests, replies, usage and
errors are the openai provider's own code. Prices: genai-prices' `azure` provider by
`pricing_model` (the model the deployment runs), else by the deployment name.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from amaos_llm.errors import ConfigError, ProviderError
from amaos_llm.providers.openai import OpenAIProvider

if TYPE_CHECKING:
    import openai
    from pydantic import SecretStr

    from amaos_llm.config import ModelSpec

ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"  # read by the SDK when the model has no base_url
PRICES_PROVIDER = "azure"  # genai-prices' id


class AzureOpenAIProvider(OpenAIProvider):
    key_env: ClassVar[str | None] = "AZURE_OPENAI_API_KEY"
    key_required: ClassVar[bool] = True

    def __init__(self, spec: ModelSpec, api_key: SecretStr | None = None) -> None:
        # Checked before anything is sent: without them no request can be right.
        if not spec.api_version:
            raise ConfigError("azure_openai needs `api_version:` (e.g. 2024-10-21)", field=f"{spec.name}.api_version")
        if not spec.base_url and not os.environ.get(ENDPOINT_ENV):
            raise ConfigError(f"azure_openai needs `base_url:` (https://RESOURCE.openai.azure.com) or ${ENDPOINT_ENV}",
                              field=f"{spec.name}.base_url")
        super().__init__(spec, api_key)

    def _new_client(self, sdk: Any, kwargs: dict[str, Any]) -> openai.AsyncAzureOpenAI:
        common = {k: v for k, v in kwargs.items() if k != "base_url"}  # Azure builds its URL from the endpoint
        common["api_key"] = self.required_key()  # the openai adapter's placeholder is for local servers only
        return sdk.AsyncAzureOpenAI(azure_endpoint=self.spec.base_url, api_version=self.spec.api_version, **common)

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


def azure_price_id(spec: ModelSpec) -> tuple[str, str]:
    """(genai-prices provider id, model id) to price an Azure deployment by."""
    return PRICES_PROVIDER, spec.pricing_model or spec.model
