"""`validate_configuration()`: what would stop each configured model from answering, found before
a real request fails: credentials present (never their values), the endpoint reachable (the free
health check, never a generation), where its price comes from, and whether its context window is
known."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from amaos_llm.pricing import PriceBook
from amaos_llm.tokens import context_window

if TYPE_CHECKING:
    from amaos_llm.config import ModelSpec

PriceSource = Literal["yaml", "genai-prices", "local", "unknown"]
_SOURCES: dict[str, PriceSource] = {"config": "yaml", "genai-prices": "genai-prices", "local": "local"}


class ModelCheck(BaseModel):
    credentials: bool
    reachable: bool | None  # None: not checked (disabled, or excluded by local_only)
    price_source: PriceSource
    context_window: int | None
    problems: list[str] = Field(default_factory=list)


class ConfigReport(BaseModel):
    ok: bool  # False when any enabled model has a problem
    models: dict[str, ModelCheck]


def check_model(
    spec: ModelSpec, credentials: bool, reachable: bool | None, prices: PriceBook, *, excluded: bool = False
) -> ModelCheck:
    """One model's check from what was found; `excluded`: local_only leaves this cloud model out
    (then it is not a problem that it was not reached)."""
    price = prices.price(spec)
    source: PriceSource = "unknown" if price is None else _SOURCES.get(price.source, "unknown")
    window = context_window(spec)
    problems = []
    if spec.enabled and not excluded:
        if not credentials:
            problems.append(f"no credentials: {_credential_hint(spec)}")
        if credentials and reachable is False:
            problems.append("not reachable: the health check failed (see get_provider_status()['last_error'])")
        if source == "unknown":
            problems.append("price unknown: set cost_per_1k_input/output (it cannot be held to a budget)")
    return ModelCheck(credentials=credentials, reachable=reachable, price_source=source, context_window=window,
                      problems=problems)


def _credential_hint(spec: ModelSpec) -> str:
    if spec.auth == "entra_id":
        from amaos_llm.providers.azure_openai import ENTRA_HINT

        return f"auth: entra_id found no Entra ID token; {ENTRA_HINT}"
    return "set " + (" or ".join(spec.key_envs) if spec.key_envs else "the provider's credential chain")
