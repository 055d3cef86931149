"""Configuration: the models, the routing rules and the defaults, from code or from YAML.

`LLMConfig.from_yaml(path)` validates `model_priority.yaml`; every problem is a `ConfigError`
that names the file, the line and the field.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from amaos_llm.errors import ConfigError
from amaos_llm.inputs import MaxTokens, Temperature
from amaos_llm.providers.registry import is_loopback_url, provider_info
from amaos_llm.yaml_source import FieldError, config_error, load_yaml

ENTRA_PROVIDERS = ("azure_openai",)  # the providers `auth: entra_id` applies to

CONFIG_ENV = "AMAOS_LLM_CONFIG"
PACKAGED_CONFIG = Path(__file__).parent / "data" / "model_priority.yaml"

Source = Literal["local", "cloud"]
Capability = Literal["text", "tools", "vision", "structured_output"]
BalancingStrategy = Literal["round_robin", "weighted", "random", "least_latency", "least_busy"]
Price = Decimal
# The ranges of the resilience settings, shared by `defaults` and the per-model overrides.
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
PositiveCount = Annotated[int, Field(ge=1)]
Multiplier = Annotated[float, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Rate = Annotated[float, Field(gt=0, le=1)]


class ModelSpec(BaseModel):
    """One model the manager may route to. Unset values fall back to `defaults`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    provider: str
    model: str = ""  # provider model id; empty means "same as name"
    source: Source | None = None  # default: by provider (openai_compatible: loopback base_url → local)
    base_url: str | list[str] | None = None  # several: endpoints of one model, tried per `retry_strategy`
    priority: int = 0  # higher is preferred inside its tier
    weight: float = Field(default=1.0, ge=0)  # its share under `weighted`/`random` load balancing; 0: fallback only
    enabled: bool = True
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    timeout: PositiveSeconds | None = None
    # Resilience overrides of `defaults` for this model (None: the default's value).
    max_retries: Count | None = None
    retry_backoff: Seconds | None = None
    backoff_multiplier: Multiplier | None = None
    max_retry_wait: Seconds | None = None
    retry_jitter: Fraction | None = None
    breaker_threshold: PositiveCount | None = None
    breaker_reset: PositiveSeconds | None = None
    breaker_failure_rate: Rate | None = None
    breaker_min_calls: PositiveCount | None = None
    load_timeout: PositiveSeconds | None = None
    first_token_timeout: PositiveSeconds | None = None
    cost_per_1k_input: Price | None = Field(default=None, ge=0)
    cost_per_1k_output: Price | None = Field(default=None, ge=0)
    cost_per_1k_cache_read: Price | None = Field(default=None, ge=0)  # None: the input price
    cost_per_1k_cache_write: Price | None = Field(default=None, ge=0)  # None: the input price
    context_window: int | None = Field(default=None, gt=0)  # tokens; None: n_ctx, num_ctx, genai-prices
    rpm: int | None = Field(default=None, gt=0)  # sends per any 60 s
    tpm: int | None = Field(default=None, gt=0)  # tokens (estimated until real usage arrives) per any 60 s
    api_key_env: str | list[str] | None = None  # several: keys used in order, rotated on 401/402/403/429
    max_connections: int | None = Field(default=None, ge=1)  # HTTP pool size; None: 1,000
    http_transport: Literal["aiohttp", "default"] | None = None  # None: aiohttp when installed, else the SDK's
    api_key: SecretStr | None = None  # for code; YAML should name an env var instead
    # cloud regions (bedrock): one target per region, paired by position with a base_url list
    region: str | None = None
    regions: list[str] | None = Field(default=None, min_length=1)
    api_version: str | None = None  # azure_openai: the API version its endpoint requires
    # azure_openai: `entra_id` sends a Microsoft Entra ID bearer token instead of an `api-key`
    # ($AZURE_OPENAI_AD_TOKEN, else azure-identity's DefaultAzureCredential); None: the API key
    auth: Literal["api_key", "entra_id"] | None = None
    pricing_model: str | None = None  # the model id to price by when `model` is a deployment name
    # embedded model settings
    model_path: str | None = None
    n_ctx: int | None = Field(default=None, gt=0)
    n_threads: int | None = Field(default=None, gt=0)
    seed: int | None = None
    max_concurrency: int | None = Field(default=None, ge=1)
    mmproj_path: str | None = None  # embedded: the vision projector; without it the model reads no images
    # What the model can do (None: everything its provider can); a call needing more skips it.
    capabilities: list[Capability] | None = Field(default=None, min_length=1)
    max_image_bytes: int | None = Field(default=None, gt=0)  # None: the provider's limit (capabilities.py)
    options: dict[str, Any] = Field(default_factory=dict)  # passed through to the provider

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        try:
            provider_info(value)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return value

    @field_validator("base_url", "api_key_env")
    @classmethod
    def _one_or_more(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list: give one value or several")
            if len(set(value)) != len(value):
                raise ValueError(f"duplicate entries in {value!r}")
            if len(value) == 1:
                return value[0]
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> ModelSpec:
        info = provider_info(self.provider)
        if not self.model:
            object.__setattr__(self, "model", self.name)
        if self.source is None:
            local = info.local if info.local is not None else all(is_loopback_url(u) for u in self.endpoints)
            object.__setattr__(self, "source", "local" if local else "cloud")
        if self.auth == "entra_id":
            if self.provider not in ENTRA_PROVIDERS:
                raise FieldError(("auth",), f"entra_id is for {', '.join(ENTRA_PROVIDERS)}, not {self.provider}")
            if self.api_key_env is not None or self.api_key is not None:
                field = "api_key_env" if self.api_key_env is not None else "api_key"
                raise FieldError((field,), "auth: entra_id sends a bearer token, not a key: remove the key")
        elif self.api_key_env is None and info.key_env:
            object.__setattr__(self, "api_key_env", info.key_env)
        if self.regions and isinstance(self.base_url, list) and len(self.base_url) != len(self.regions):
            raise ValueError(f"base_url lists {len(self.base_url)} URLs for {len(self.regions)} regions: "
                             "pair them one to one, or give one base_url")
        return self

    @property
    def is_local(self) -> bool:
        return self.source == "local"

    @property
    def endpoints(self) -> tuple[str | None, ...]:
        """The model's URLs in order; (None,) for the SDK's default (or an in-process model)."""
        url = self.base_url
        return (url,) if not isinstance(url, list) else tuple(url)

    def endpoint_specs(self) -> list[tuple[str | None, ModelSpec]]:
        """(URL, this spec narrowed to it) per endpoint: one per base_url, or one per region
        (paired by position with a base_url list; a single base_url serves every region)."""
        regions = self.regions or ([self.region] if self.region else [])
        if len(regions) > 1:
            urls = self.endpoints if isinstance(self.base_url, list) else (self.base_url,) * len(regions)
            if len(urls) != len(regions):
                raise ValueError(f"{self.name}: {len(urls)} base_urls for {len(regions)} regions")
            return [(url or region_url(self.provider, region),
                     self.model_copy(update={"base_url": url, "region": region, "regions": None}))
                    for url, region in zip(urls, regions)]
        urls = self.endpoints
        if len(urls) == 1:
            narrowed = self if not regions or self.region else self.model_copy(update={"region": regions[0]})
            return [(urls[0] or (region_url(self.provider, regions[0]) if regions else None), narrowed)]
        return [(url, self.model_copy(update={"base_url": url})) for url in urls]

    @property
    def key_envs(self) -> tuple[str, ...]:
        """The environment variables holding its keys, in the order they are used."""
        env = self.api_key_env
        return () if env is None else (env,) if isinstance(env, str) else tuple(env)

    @property
    def key_required(self) -> bool:
        """Cloud SDKs need a key; any model that names a key variable needs it set. An Entra ID
        model needs a token instead, which its provider finds (`has_credentials`)."""
        if self.auth == "entra_id":
            return False
        return self.api_key_env is not None or provider_info(self.provider).key_required

    def has_key(self) -> bool:
        """A key is given in code or set in the environment (without reading it into a secret)."""
        if self.api_key is not None:
            return True
        env = self.api_key_env
        if isinstance(env, str):
            return bool(os.environ.get(env))
        return env is not None and any(os.environ.get(e) for e in env)

    def resolve_key(self, env: str | None = None) -> SecretStr | None:
        """The key given in code, else the one in `env` (default: the first variable that is set),
        else None."""
        if self.api_key is not None:
            return self.api_key
        names = (env,) if env is not None else self.key_envs
        for name in names:
            value = os.environ.get(name)
            if value:
                return SecretStr(value)
        return None


def region_url(provider: str, region: str) -> str | None:
    """The public endpoint of a regional cloud API, for `Attempt.endpoint` (the SDK builds its own)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com" if provider == "bedrock" else None


def first_set(a: Any, b: Any, c: Any = None) -> Any:
    """The first value that is not None, for settings a call, a model and `defaults` may each give:
    0 and 0.0 are real settings (temperature 0.0 stays 0.0). On every call's path: no loop."""
    return a if a is not None else b if b is not None else c


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefer_local: bool = True
    strategy: Literal["priority", "cost"] = "priority"
    local_only: bool = False
    enable_fallback: bool = True
    fallback_chain: list[str] | None = None  # explicit order; replaces the computed one
    load_balancing: BalancingStrategy | None = None  # how to spread calls over equally ranked models
    # A model with several base_urls: model_first tries all URLs of one model before the next
    # model; endpoint_first tries each model's first URL, then each one's second, and so on.
    retry_strategy: Literal["model_first", "endpoint_first"] = "model_first"
    # A stream that fails after its first chunk: fail (raise StreamInterrupted), restart (a reset
    # chunk, then retries and fallback as usual) or continue (resume from the partial text).
    mid_stream: Literal["fail", "restart", "continue"] = "fail"
    random_seed: int | None = None  # seeds the retry jitter (and later draws); `LLMManager(rng=)` in code


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: MaxTokens = 1024
    temperature: Temperature = 0.7
    timeout: PositiveSeconds = 30.0  # per attempt
    deadline: PositiveSeconds | None = None  # per call, every attempt and wait included
    max_retries: Count = 1  # extra tries on the same model for transient errors
    retry_backoff: Seconds = 0.5  # seconds before the first retry
    backoff_multiplier: Multiplier = 2.0  # retry n waits min(retry_backoff * multiplier**(n-1), max_retry_wait)
    max_retry_wait: Seconds = 10.0  # caps the backoff; a longer Retry-After falls back instead
    retry_jitter: Fraction = 0.1  # each wait is shortened by a random share of up to this; 0: exact
    breaker_threshold: PositiveCount = 5  # consecutive failures that open a model's breaker
    breaker_reset: PositiveSeconds = 30.0  # seconds before a half-open probe
    breaker_failure_rate: Rate | None = None  # also open when this share of the last breaker_min_calls sends failed
    breaker_min_calls: PositiveCount = 20
    validation_retries: Count = 1  # re-asks on the same model after a validator rejected its answer
    feature_fallback: bool = False  # re-send once without a parameter the server says it does not support
    load_timeout: PositiveSeconds | None = None  # a cold local server's first reply may take this long (None: timeout)
    first_token_timeout: PositiveSeconds | None = None  # a stream's wait for its first delta (None: timeout)


class CacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False  # answer a repeated request from the cache (each call may say otherwise)
    ttl: PositiveSeconds = 300.0  # seconds an answer stays usable after it was stored
    max_size: PositiveCount = 1024  # answers kept; the least recently used goes first


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # record prompts and replies on attempt spans (OpenTelemetry GenAI `gen_ai.input/output.messages`);
    # $OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true does the same. Keys never.
    capture_content: bool = False


class StateConfig(BaseModel):
    """Where budgets, rate limits, circuit breakers and the result cache live: this process, or a
    Redis shared by a fleet."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "amaos:"
    # closed: budgeted and rate-limited calls refuse while the store is unreachable (nothing is sent
    # unbudgeted or past an uncounted limit); open: they go on unbudgeted, rate limits counted per
    # process, with a warning
    on_error: Literal["closed", "open"] = "closed"

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
            raise ValueError("not a Redis URL (redis://host:port/db)")
        return value


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget_usd: Price | None = Field(default=None, ge=0)  # the manager's whole life; None: no budget
    budget_key: str = Field(default="default", min_length=1)  # managers on one store and key share a budget
    state: StateConfig = Field(default_factory=StateConfig)

    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    cache: CacheConfig = Field(default_factory=CacheConfig)
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

    def with_models(self, models: Sequence[ModelSpec]) -> LLMConfig:
        """A copy holding `models`, validated as a whole (duplicate names, the fallback chain)."""
        data = self.model_dump(exclude={"models"})
        try:
            return LLMConfig.model_validate({**data, "models": list(models)})
        except ValidationError as exc:
            raise config_error(exc, LLMConfig) from None

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
