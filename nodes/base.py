"""The node contract.

A node takes one `TaskMessage` and returns exactly one `ResultMessage`::

    class Shout(Node):
        type_name = "shout"                       # the YAML `type`
        async def handle(self, task):
            return task.reply(task.content.upper())

- `__init__` takes only serialisable settings (`id`, `name`, `config`); heavy set-up (clients,
  models) happens in `initialize()`, and `aclose()` releases it.
- `config` is validated by the node's `Config` model (extra keys are rejected); common keys for
  every node: `timeout` (seconds per task), `max_iterations` (allows a loop through this node)
  and `accepts_errors`.
- `input_type` / `output_type` describe the `content` a node accepts and produces. The
  orchestrator refuses an edge whose types do not fit when it is connected; `Any` fits all.
- A node whose inputs include a failed result is not called: the orchestrator passes the failure
  on, unless the node's config sets `accepts_errors` (a router does by default). A node that
  returns an input's error unchanged passes the failure on; it has not failed itself.
- `to_spec()` is the `{id, type, name, config}` form a YAML pipeline holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amaos_llm.yaml_source import config_error
from nodes.messages import ZERO_USAGE, ResultMessage, TaskMessage


class NodeConfig(BaseModel):
    """Settings every node accepts. Subclasses add their own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float | None = Field(default=None, gt=0)
    max_iterations: int | None = Field(default=None, ge=1)
    accepts_errors: bool = False  # run even when an input failed (to handle or route the failure)


@dataclass(slots=True)
class NodeStats:
    """Per-node counters, updated by the orchestrator after each task."""

    calls: int = 0
    errors: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)

    def record(self, result: ResultMessage) -> None:
        self.calls += 1
        if result.error is not None:
            self.errors += 1
        usage = result.usage
        if usage is not ZERO_USAGE:
            self.tokens += usage.input_tokens + usage.output_tokens
        if result.cost:
            self.cost += result.cost


class Node:
    type_name: ClassVar[str] = ""
    Config: ClassVar[type[NodeConfig]] = NodeConfig
    input_type: Any = Any
    output_type: Any = str
    max_inputs: ClassVar[int | None] = None  # e.g. 1 for a router, which judges one result
    # Config keys naming files the node reads: a YAML pipeline resolves them against its own folder
    # and checks, when it is loaded, that they can be read.
    path_fields: ClassVar[tuple[str, ...]] = ()

    # Set by the orchestrator that runs the node: `(task, kind, text)` for a streaming node's
    # progress ("token", "stream_reset"); None when nobody listens (nodes never import graphs).
    on_stream: Callable[[TaskMessage, str, str], None] | None = None

    def __init__(self, id: str, name: str | None = None, config: Mapping[str, Any] | NodeConfig | None = None) -> None:
        if not isinstance(id, str) or not id:
            raise ValueError("a node needs a non-empty string id")
        self.id = id
        self.name = name or id
        self.config = self.parse_config(config, where=(id, "config"))
        self.stats = NodeStats()

    @classmethod
    def parse_config(
        cls, config: Mapping[str, Any] | NodeConfig | None, where: tuple[str | int, ...] = ()
    ) -> NodeConfig:
        """`config` validated by `cls.Config`; a `ConfigError` naming the field when it is wrong."""
        if isinstance(config, cls.Config):
            return config
        try:
            return cls.Config.model_validate(dict(config or {}))
        except ValidationError as exc:
            raise config_error(exc, cls.Config, prefix=where) from None

    @property
    def timeout(self) -> float | None:
        return self.config.timeout

    @property
    def max_iterations(self) -> int | None:
        return self.config.max_iterations

    @property
    def accepts_errors(self) -> bool:
        return self.config.accepts_errors

    async def initialize(self) -> None:
        """Acquire what `handle` needs (clients, models). Called once before the first task."""

    async def handle(self, task: TaskMessage) -> ResultMessage:
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")

    async def aclose(self) -> None:
        """Release what `initialize` acquired."""

    def get_stats(self) -> dict[str, Any]:
        s = self.stats
        return {"node_id": self.id, "type": self.type_name, "calls": s.calls, "errors": s.errors,
                "tokens": s.tokens, "cost": s.cost}

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"id": self.id, "type": self.type_name}
        if self.name != self.id:
            spec["name"] = self.name
        config = self.config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        if config:
            spec["config"] = config
        return spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"
