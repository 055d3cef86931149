"""YAML pipelines: the same nodes and edges as code, written down.

    name: summarize
    settings: {node_timeout: 120}            # optional: max_concurrency, node_timeout, fail_fast, budget_usd
    managers:                                # optional: managers shared by the nodes naming them
      local: {config_path: ../model_priority.yaml, local_only: true, budget_usd: 5}
    nodes:
      - {id: prompt, type: prompt_template, config: {template: "Summarise in one line: {input}"}}
      - {id: llm, type: llm_manager, config: {manager: local, budget_usd: 0.05}}
      - {id: out, type: output}
    edges:
      - {from: prompt, to: llm}
      - {from: llm, to: out, when: {field: error, is_null: true}}   # see nodes.conditions

`settings.budget_usd` caps what each run spends; a node's `budget_usd` caps its own spend per run.
A `managers:` entry is one `LLMManager` (its budget, stats, breakers and rate limits), shared by
the `llm_manager` nodes that name it, opened and closed with the pipeline; a node naming one sets
no `config_path`/`local_only`/`enable_fallback` of its own.

Read with the safe loader; a `type` resolves only through `nodes.registry` (built-ins and
`amaos.nodes` entry points), never as an import path. Relative paths in node configs are relative
to the YAML file. Every problem is a `ConfigError` naming the file, the line and the field.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from amaos_llm import ConfigError, LLMManager
from amaos_llm.yaml_source import YamlDocument, config_error, format_loc, load_yaml
from graphs.errors import TopologyError
from graphs.orchestrator import GraphOrchestrator, RunInput
from graphs.results import RunResult
from graphs.streaming import MapStream
from nodes import Condition, Node, NodeConfig, Payload, node_class


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    name: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class EdgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    src: str = Field(alias="from", min_length=1)
    dst: str = Field(alias="to", min_length=1)
    when: Any = None  # a route name or a condition mapping (validated by `Condition` when loaded)

    @field_validator("when")
    @classmethod
    def _route_or_condition(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML 1.1 reads yes/no/on/off as booleans
            raise ValueError(f"`when: {str(value).lower()}` reads as a boolean; quote a route name: when: \"yes\"")
        if value is not None and not isinstance(value, (str, dict)):
            raise ValueError("`when` is a route name or a condition mapping")
        return value


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_concurrency: int | None = Field(default=None, ge=1)
    node_timeout: float | None = Field(default=None, gt=0)
    fail_fast: bool = False
    budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # each run's cap


class ManagerSpec(BaseModel):
    """A `managers:` entry: one `LLMManager` the nodes naming it share."""

    model_config = ConfigDict(extra="forbid")

    config_path: str | None = None  # a model_priority.yaml; None: $AMAOS_LLM_CONFIG or the packaged one
    local_only: bool | None = None
    enable_fallback: bool | None = None
    budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # for the manager's life

    def build(self) -> LLMManager:
        options: dict[str, Any] = {"local_only": self.local_only, "enable_fallback": self.enable_fallback,
                                   "budget_usd": self.budget_usd}
        if self.config_path is not None:
            return LLMManager.from_yaml(Path(self.config_path).expanduser(), **options)
        return LLMManager(**options)


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str | None = None
    settings: PipelineSettings = Field(default_factory=PipelineSettings)
    managers: dict[str, ManagerSpec] = Field(default_factory=dict)
    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(default_factory=list)


class Pipeline:
    """A named graph: an orchestrator plus what is needed to write it back as YAML."""

    def __init__(
        self, orchestrator: GraphOrchestrator, *, name: str | None = None, description: str | None = None,
        path: str | Path | None = None, managers: Mapping[str, tuple[ManagerSpec, LLMManager]] | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.name = name or orchestrator.name
        self.description = description
        self.path = Path(path) if path is not None else None
        # The `managers:` entries: what each was built from (written back by `to_spec`) and the
        # manager its nodes share. The pipeline owns them: its nodes only borrow them.
        self.manager_specs: dict[str, ManagerSpec] = {k: spec for k, (spec, _) in (managers or {}).items()}
        self.managers: dict[str, LLMManager] = {k: manager for k, (_, manager) in (managers or {}).items()}
        # Opened and closed with the orchestrator, so that any way of running it (its own `run`,
        # `iter_runs`, ...) after `aclose` reopens them, as it reinitializes the nodes.
        for manager in self.managers.values():
            orchestrator.own(manager)

    @classmethod
    def from_yaml(
        cls, path: str | Path, *, local_only: bool | None = None, config_path: str | Path | None = None
    ) -> Pipeline:
        return load_pipeline(path, local_only=local_only, config_path=config_path)

    @classmethod
    def from_spec(
        cls,
        spec: PipelineSpec | Mapping[str, Any],
        *,
        base_dir: str | Path | None = None,
        llm_overrides: Mapping[str, Any] | None = None,
        doc: YamlDocument | None = None,
    ) -> Pipeline:
        """Build from a spec (a `PipelineSpec` or its dict form). `llm_overrides` replace config
        values of every `llm_manager` node (the CLI's `--local-only` and `--config`)."""
        if not isinstance(spec, PipelineSpec):
            try:
                spec = PipelineSpec.model_validate(spec)
            except ValidationError as exc:
                raise config_error(exc, PipelineSpec, doc) from None
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        s = spec.settings
        orchestrator = GraphOrchestrator(
            max_concurrency=s.max_concurrency, node_timeout=s.node_timeout, fail_fast=s.fail_fast, name=spec.name,
            budget_usd=s.budget_usd,
        )
        where = _Where(doc)
        managers = {name: _build_manager(entry, base, llm_overrides or {}, where.at(("managers", name)))
                    for name, entry in spec.managers.items()}
        for i, node_spec in enumerate(spec.nodes):
            node = _build_node(node_spec, base, llm_overrides or {}, where.at(("nodes", i)), managers)
            try:
                orchestrator.add_node(node)
            except TopologyError as exc:
                raise where.error(("nodes", i, "id"), str(exc)) from None
        for i, edge in enumerate(spec.edges):
            when = _condition(edge.when, where.at(("edges", i, "when")))
            try:
                orchestrator.connect(edge.src, edge.dst, when)
            except TopologyError as exc:
                raise where.error(("edges", i, exc.field or "to"), str(exc)) from None
        return cls(orchestrator, name=spec.name, description=spec.description,
                   path=doc.path if doc is not None else None, managers=managers)

    # -- running ------------------------------------------------------------------------------

    # A closed pipeline runs again: each of these opens it first, its managers' stats and budgets kept.

    async def run(self, inputs: RunInput, **kwargs: Any) -> RunResult:
        return await self.orchestrator.run(inputs, **kwargs)

    async def run_many(self, inputs: Iterable[RunInput], concurrency: int = 16, **kwargs: Any) -> list[RunResult]:
        return await self.orchestrator.run_many(inputs, concurrency, **kwargs)

    def iter_runs(
        self, inputs: Iterable[RunInput] | AsyncIterable[RunInput], concurrency: int = 16, **kwargs: Any
    ) -> MapStream[tuple[Payload, ...], RunResult]:
        """See `GraphOrchestrator.iter_runs`."""
        return self.orchestrator.iter_runs(inputs, concurrency, **kwargs)

    async def initialize(self) -> None:
        """Open the shared managers (again, after `aclose`: their stats and budgets are kept), then
        initialize the nodes."""
        await self.orchestrator.initialize()

    async def aclose(self) -> None:
        """Close the nodes, then the shared managers; the first error is raised once all are closed."""
        await self.orchestrator.aclose()

    async def __aenter__(self) -> Pipeline:
        await self.initialize()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- writing ------------------------------------------------------------------------------

    def to_spec(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """The YAML form. File paths in node configs are made relative to `relative_to` if given."""
        o = self.orchestrator
        spec: dict[str, Any] = {"name": self.name}
        if self.description:
            spec["description"] = self.description
        budget = None if o.budget_usd is None else float(o.budget_usd)
        settings = PipelineSettings(max_concurrency=o.max_concurrency, node_timeout=o.node_timeout,
                                    fail_fast=o.fail_fast, budget_usd=budget).model_dump(exclude_defaults=True)
        if settings:
            spec["settings"] = settings
        if self.manager_specs:
            spec["managers"] = {name: _manager_spec(entry, relative_to) for name, entry in self.manager_specs.items()}
        spec["nodes"] = [_node_spec(node, relative_to) for node in o.nodes.values()]
        spec["edges"] = [_edge_spec(edge) for edge in o.edges]
        return spec

    def to_yaml(self, relative_to: str | Path | None = None) -> str:
        import yaml

        class Dumper(yaml.SafeDumper):
            pass

        def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
            # Templates and prompts read best as literal blocks.
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

        Dumper.add_representer(str, text)
        return yaml.dump(self.to_spec(relative_to), Dumper=Dumper, sort_keys=False, allow_unicode=True)

    def dump(self, path: str | Path) -> None:
        """Write the pipeline to `path`; `load_pipeline(path)` reads back the same pipeline."""
        path = Path(path)
        path.write_text(self.to_yaml(relative_to=path.parent), encoding="utf-8")

    def to_mermaid(self) -> str:
        return self.orchestrator.to_mermaid()

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, nodes={list(self.orchestrator.nodes)!r})"


def load_pipeline(
    path: str | Path, *, local_only: bool | None = None, config_path: str | Path | None = None
) -> Pipeline:
    """Read a pipeline file. `local_only` / `config_path` override every `llm_manager` node's."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a pipeline file holds a mapping with `name:`, `nodes:` and `edges:`")
    try:
        spec = PipelineSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise config_error(exc, PipelineSpec, doc) from None
    overrides: dict[str, Any] = {}
    if local_only is not None:
        overrides["local_only"] = local_only
    if config_path is not None:
        overrides["config_path"] = os.path.abspath(Path(config_path).expanduser())
    return Pipeline.from_spec(spec, base_dir=Path(path).parent, llm_overrides=overrides, doc=doc)


def dump_pipeline(pipeline: Pipeline, path: str | Path) -> None:
    pipeline.dump(path)


class _Where:
    """Turns a problem at `loc` into a `ConfigError` with the file and line when there is a file."""

    def __init__(self, doc: YamlDocument | None, prefix: tuple[str | int, ...] = ()) -> None:
        self.doc, self.prefix = doc, prefix

    def at(self, loc: tuple[str | int, ...]) -> _Where:
        return _Where(self.doc, self.prefix + loc)

    def error(self, loc: Sequence[str | int], message: str) -> ConfigError:
        full = self.prefix + tuple(loc)
        if self.doc is not None:
            return self.doc.error(full, message)
        return ConfigError(message, field=format_loc(full))

    def invalid(self, exc: ValidationError, model: type[BaseModel]) -> ConfigError:
        return config_error(exc, model, self.doc, prefix=self.prefix)


def _build_manager(
    entry: ManagerSpec, base: Path, llm_overrides: Mapping[str, Any], where: _Where
) -> tuple[ManagerSpec, LLMManager]:
    """A `managers:` entry: its paths resolved, the CLI's overrides applied, its manager built."""
    path = entry.config_path
    if path is not None and "config_path" not in llm_overrides:
        if not Path(path).expanduser().is_absolute():
            path = os.path.abspath(base / path)
        problem = _unreadable(path)
        if problem is not None:
            raise where.error(("config_path",), f"cannot read file {path}: {problem}")
    entry = entry.model_copy(update={"config_path": path, **llm_overrides})
    return entry, entry.build()


def _shared_manager(
    spec: NodeSpec, managers: Mapping[str, tuple[ManagerSpec, LLMManager]], where: _Where
) -> LLMManager | None:
    """The shared manager an `llm_manager` node names with `manager:`, or None if it names none."""
    name = spec.config.get("manager") if spec.type == "llm_manager" else None
    if name is None:
        return None
    if "config_path" in spec.config:
        raise where.error(("config", "config_path"),
                          f"`manager` and `config_path` together: set config_path on the `managers:` entry {name!r}")
    if not isinstance(name, str) or name not in managers:
        known = ", ".join(managers) or "(none: add a top-level `managers:` mapping)"
        raise where.error(("config", "manager"), f"unknown manager {name!r}; known managers: {known}")
    return managers[name][1]


def _build_node(
    spec: NodeSpec, base: Path, llm_overrides: Mapping[str, Any], where: _Where,
    managers: Mapping[str, tuple[ManagerSpec, LLMManager]] | None = None,
) -> Node:
    try:
        cls = node_class(spec.type)
    except ConfigError as exc:
        raise where.error(("type",), exc.reason) from None
    shared = _shared_manager(spec, managers or {}, where)
    # The CLI's --local-only/--config reach a node that names a shared manager through that manager.
    overrides = llm_overrides if spec.type == "llm_manager" and shared is None else {}
    try:
        config = cls.Config.model_validate({**spec.config, **overrides})
    except ValidationError as exc:
        raise where.at(("config",)).invalid(exc, cls.Config) from None
    config = _resolve_paths(cls, config, base)
    for key in cls.path_fields:
        value = getattr(config, key, None)
        # Checked now, while the file and line are known; a node would only notice when it starts.
        # An override names no place in this file: whoever reads it reports it.
        problem = _unreadable(value) if isinstance(value, str) and value and key not in overrides else None
        if problem is not None:
            raise where.error(("config", key), f"cannot read file {value}: {problem}")
    try:
        if shared is not None:
            return cls(spec.id, spec.name, config, manager=shared)  # type: ignore[call-arg]
        return cls(spec.id, spec.name, config)  # type: ignore[call-arg]
    except (ValueError, TypeError) as exc:  # ConfigError and TopologyError are ValueErrors
        raise where.error((), f"cannot build node {spec.id!r}: {exc}") from None


def _resolve_paths(cls: type[Node], config: NodeConfig, base: Path) -> NodeConfig:
    updates = {}
    for key in cls.path_fields:
        value = getattr(config, key, None)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            updates[key] = os.path.abspath(base / value)  # not resolve(): keep symlinked paths as written
    return config.model_copy(update=updates) if updates else config


def _unreadable(path: str) -> str | None:
    """Why `path` cannot be opened for reading (`No such file or directory`...), or None."""
    try:
        with open(Path(path).expanduser(), "rb"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _condition(when: str | dict[str, Any] | None, where: _Where) -> Condition | str | None:
    if not isinstance(when, dict):
        return when
    try:
        return Condition.model_validate(when)
    except ValidationError as exc:
        raise where.invalid(exc, Condition) from None


def _node_spec(node: Node, relative_to: str | Path | None) -> dict[str, Any]:
    spec = node.to_spec()
    config = spec.get("config")
    if relative_to is not None and config:
        for key in type(node).path_fields:
            value = config.get(key)
            if isinstance(value, str) and Path(value).is_absolute():
                config[key] = Path(os.path.relpath(value, os.path.abspath(relative_to))).as_posix()
    return spec


def _manager_spec(entry: ManagerSpec, relative_to: str | Path | None) -> dict[str, Any]:
    data = entry.model_dump(exclude_none=True)
    path = data.get("config_path")
    if relative_to is not None and isinstance(path, str) and Path(path).is_absolute():
        data["config_path"] = Path(os.path.relpath(path, os.path.abspath(relative_to))).as_posix()
    return data


def _edge_spec(edge: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"from": edge.src, "to": edge.dst}
    when = edge.when
    if when is None:
        return spec
    if not isinstance(when, Condition):
        raise TypeError(
            f"edge {edge.src!r} → {edge.dst!r} has a Python callable `when` and cannot be written to YAML; "
            "use a Condition"
        )
    data = when.to_data()
    spec["when"] = data["route"] if list(data) == ["route"] else data
    return spec
