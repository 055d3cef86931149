"""Configuration: the models, the routing rules and the defaults, from code or from YAML.

`LLMConfig.from_yaml(path)` validates `model_priority.yaml`; every problem is a `ConfigError`
that names the file, the line and the field.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from amaos_llm.errors import ConfigError
from amaos_llm.inputs import MaxTokens, Temperature
from amaos_llm.providers.registry import is_loopback_url, provider_info
from amaos_llm.yaml_source import FieldError, config_error, load_yaml

CONFIG_ENV = "AMAOS_LLM_CONFIG"
PACKAGED_CONFIG = Path(__file__).parent / "data" / "model_priority.yaml"

Source = Literal["local", "cloud"]
Price = Decimal


class ModelSpec(BaseModel):
    """One model the manager may route to. Unset values fall back to `defaults`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    provider: str
    model: str = ""  # provider model id; empty means "same as name"
    source: Source | None = None  # default: by provider (openai_compatible: loopback base_url → local)
    base_url: str | None = None
    priority: int = 0  # higher is preferred inside its tier
    enabled: bool = True
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    cost_per_1k_input: Price | None = Field(default=None, ge=0)
    cost_per_1k_output: Price | None = Field(default=None, ge=0)
    api_key_env: str | None = None
    max_connections: int | None = Field(default=None, ge=1)  # HTTP pool size; None: 1,000
    http_transport: Literal["aiohttp", "default"] | None = None  # None: aiohttp when installed, else the SDK's
    api_key: SecretStr | None = None  # for code; YAML should name an env var instead
    # embedded model settings
    model_path: str | None = None
    n_ctx: int | None = Field(default=None, gt=0)
    n_threads: int | None = Field(default=None, gt=0)
    seed: int | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)  # passed through to the provider

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        try:
            provider_info(value)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> ModelSpec:
        info = provider_info(self.provider)
        if not self.model:
            object.__setattr__(self, "model", self.name)
        if self.source is None:
            local = info.local if info.local is not None else is_loopback_url(self.base_url)
            object.__setattr__(self, "source", "local" if local else "cloud")
        if self.api_key_env is None and info.key_env:
            object.__setattr__(self, "api_key_env", info.key_env)
        return self

    @property
    def is_local(self) -> bool:
        return self.source == "local"

    @property
    def key_required(self) -> bool:
        """Cloud SDKs need a key; any model that names a key variable needs it set."""
        return self.api_key_env is not None or provider_info(self.provider).key_required

    def resolve_key(self) -> SecretStr | None:
        """The key given in code, else the one in the environment variable, else None."""
        if self.api_key is not None:
            return self.api_key
        value = os.environ.get(self.api_key_env) if self.api_key_env else None
        return SecretStr(value) if value else None


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefer_local: bool = True
    strategy: Literal["priority", "cost"] = "priority"
    local_only: bool = False
    enable_fallback: bool = True
    fallback_chain: list[str] | None = None  # explicit order; replaces the computed one


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: MaxTokens = 1024
    temperature: Temperature = 0.7
    timeout: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=1, ge=0)  # extra tries on the same model for retryable errors
    retry_backoff: float = Field(default=0.5, ge=0)  # seconds, doubled each retry
    max_retry_wait: float = Field(default=10.0, ge=0)  # a longer Retry-After falls back instead
    breaker_threshold: int = Field(default=5, ge=1)  # consecutive failures that open a model's breaker
    breaker_reset: float = Field(default=30.0, gt=0)  # seconds before a half-open probe


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    models: list[ModelSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_names(self) -> LLMConfig:
        seen: set[str] = set()
        for i, spec in enumerate(self.models):
            if spec.name in seen:
                raise FieldError(("models", i, "name"), f"duplicate model name {spec.name!r}")
            seen.add(spec.name)
        for i, name in enumerate(self.routing.fallback_chain or ()):
            if name not in seen:
                raise FieldError(
                    ("routing", "fallback_chain", i),
                    f"unknown model {name!r}; known models: {', '.join(s.name for s in self.models)}",
                )
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> LLMConfig:
        doc = load_yaml(path)
        data = doc.data if doc.data is not None else {}
        if not isinstance(data, dict):
            raise doc.error((), "the file must hold a mapping with a `models:` list")
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, cls, doc) from None
        return config.resolve_paths(Path(path).parent)

    @classmethod
    def default(cls) -> LLMConfig:
        """The file named by $AMAOS_LLM_CONFIG, else the packaged default."""
        named = os.environ.get(CONFIG_ENV)
        if not named:
            return cls.from_yaml(PACKAGED_CONFIG)
        try:
            return cls.from_yaml(named)
        except ConfigError as exc:
            if exc.line is not None:  # a problem inside the file: its file:line says where
                raise
            # The file itself is missing or unreadable: say where its name came from.
            raise ConfigError(exc.reason, path=f"${CONFIG_ENV}={named}", field=exc.field) from None

    def resolve_paths(self, base: Path) -> LLMConfig:
        """Relative `model_path`s are relative to the YAML file, as a reader of the file expects."""
        models = [
            m.model_copy(update={"model_path": str((base / m.model_path).resolve())})
            if m.model_path and not Path(m.model_path).expanduser().is_absolute()
            else m
            for m in self.models
        ]
        return self.model_copy(update={"models": models})

    def with_routing(self, **overrides: Any) -> LLMConfig:
        """A copy with the given routing values replaced; `None` values leave the file's value."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        return self.model_copy(update={"routing": self.routing.model_copy(update=given)})
