"""`LLMManagerNode`: one `LLMManager` call per task, with the model, usage and cost on the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from amaos_llm import (
    AllModelsFailed,
    ConfigError,
    LLMManager,
    LLMResult,
    Message,
    StreamInterrupted,
    ToolLoopLimit,
    ToolRun,
)
from amaos_llm.inputs import MaxTokens, Temperature
from nodes.base import Node, NodeConfig
from nodes.messages import ResultMessage, TaskMessage


class LLMNodeConfig(NodeConfig):
    config_path: str | None = None  # a model_priority.yaml; None: $AMAOS_LLM_CONFIG or the packaged one
    local_only: bool | None = None  # None: as the config file says
    enable_fallback: bool | None = None
    # Defaults for this node's calls; a task's payload overrides each of them.
    system_prompt: str | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    force_model: str | None = None
    # stream: the answer arrives chunk by chunk (observers get `token` events); downstream still
    # gets one result. mid_stream: what a stream cut after its first chunk does (None: the YAML's).
    stream: bool = False
    mid_stream: Literal["fail", "restart", "continue"] | None = None
    # Tools the model may call, as dicts (OpenAI's function shape or name/description/parameters):
    # their calls come back in `data["tool_calls"]`. Functions given to the node are run instead.
    tools: list[dict[str, Any]] | None = None
    tool_choice: str = "auto"  # auto | required | none | a tool's name
    response_format: dict[str, Any] | None = None  # an object JSON schema; `data["parsed"]` holds the answer
    max_tool_steps: int = Field(default=8, ge=1)  # with functions: model turns before giving up
    # manager: a pipeline's `managers:` entry, shared with the other nodes naming it (it replaces
    # config_path/local_only/enable_fallback). budget_usd: what this node may spend in one run,
    # every lap of a loop together.
    manager: str | None = Field(default=None, min_length=1)
    budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_source_of_manager(self) -> LLMNodeConfig:
        if self.manager is not None:
            for key in ("config_path", "local_only", "enable_fallback"):
                if getattr(self, key) is not None:
                    raise ValueError(f"`manager` and `{key}` together: set {key} on the `managers:` "
                                     f"entry {self.manager!r}")
        return self


class LLMManagerNode(Node):
    """Sends its input to an `LLMManager` and returns the answer with its metadata.

    The prompt is the upstream content (the run's input for a root node; a root given a chat
    sends the chat). Per-task overrides in the payload (`system_prompt`, `temperature`,
    `max_tokens`, `force_model`) win over this node's config, which wins over the manager's
    defaults. `manager=` shares an existing manager (the node then does not close it).
    `tools=[functions]` runs a tool loop (`LLMManager.run_tools`, up to `max_tool_steps`, not
    streamed): the result is the final answer, with usage and cost of every step.
    """

    type_name = "llm_manager"
    Config = LLMNodeConfig
    config: LLMNodeConfig
    input_type = str
    output_type = str
    path_fields = ("config_path",)

    def __init__(
        self,
        id: str,
        name: str | None = None,
        config: Any = None,
        *,
        manager: LLMManager | None = None,
        tools: Sequence[Callable[..., Any]] | None = None,
    ) -> None:
        super().__init__(id, name, config)
        self.manager = manager
        self._owns_manager = manager is None
        self.tools = list(tools) if tools else None
        if self.tools and self.config.tools:
            raise ValueError(f"node {id!r}: give tools as functions or as config dicts, not both")
        c = self.config
        # only what is set, so that a plain node calls the manager exactly as before tools existed
        self._tool_kw: dict[str, Any] = {k: v for k, v in (("tools", c.tools), ("response_format", c.response_format))
                                         if v is not None}
        if c.tool_choice != "auto":
            self._tool_kw["tool_choice"] = c.tool_choice

    async def initialize(self) -> None:
        if self.manager is not None:
            if self._owns_manager:  # initialized again after aclose: the same manager, its stats and budget kept
                await self.manager.__aenter__()
            return
        c = self.config
        if c.manager is not None:
            raise ConfigError(f"node {self.id!r} names manager {c.manager!r}: load it from a pipeline whose "
                              "`managers:` has that entry, or pass manager=")
        if c.config_path is not None:
            self.manager = LLMManager.from_yaml(
                Path(c.config_path).expanduser(), local_only=c.local_only, enable_fallback=c.enable_fallback
            )
        else:
            self.manager = LLMManager(local_only=c.local_only, enable_fallback=c.enable_fallback)

    async def handle(self, task: TaskMessage) -> ResultMessage:
        manager = self.manager
        if manager is None:
            return task.fail(f"node {self.id!r} is not initialized")
        payload, c = task.payload, self.config
        temperature = payload.temperature if payload.temperature is not None else c.temperature
        max_tokens = payload.max_tokens if payload.max_tokens is not None else c.max_tokens
        force_model = payload.force_model if payload.force_model is not None else c.force_model
        system_prompt = payload.system_prompt if payload.system_prompt is not None else c.system_prompt
        kw = self._tool_kw
        if task.budget:  # the run's ledgers (and the node's own): every call below spends from them
            kw = {**kw, "budget": task.budget}
        try:
            if self.tools:
                return await self._run_tools(task, manager, system_prompt, temperature=temperature,
                                             max_tokens=max_tokens, force_model=force_model,
                                             **({"budget": task.budget} if task.budget else {}))
            if not task.inputs and payload.messages:
                messages = list(payload.messages)
                if system_prompt is not None and messages[0].role != "system":
                    messages.insert(0, Message(role="system", content=system_prompt))
                if c.stream:
                    result = await self._stream(task, manager.stream(
                        messages, temperature=temperature, max_tokens=max_tokens, force_model=force_model,
                        mid_stream=c.mid_stream, **kw))
                else:
                    result = await manager.chat(
                        messages, temperature=temperature, max_tokens=max_tokens, force_model=force_model, **kw
                    )
            elif c.stream:
                result = await self._stream(task, manager.stream(
                    task.content, system_prompt=system_prompt, temperature=temperature, max_tokens=max_tokens,
                    force_model=force_model, mid_stream=c.mid_stream, **kw))
            else:
                result = await manager.complete(
                    task.content, system_prompt=system_prompt, temperature=temperature,
                    max_tokens=max_tokens, force_model=force_model, **kw
                )
        except (AllModelsFailed, StreamInterrupted) as exc:
            return task.reply(error=str(exc), attempts=tuple(exc.attempts))
        return _result_message(task, result)

    async def _run_tools(self, task: TaskMessage, manager: LLMManager, system_prompt: str | None,
                         **kw: Any) -> ResultMessage:
        c = self.config
        if not task.inputs and task.payload.messages:
            messages = list(task.payload.messages)
        else:
            messages = [Message(role="user", content=task.content)]
        if system_prompt is not None and messages[0].role != "system":
            messages.insert(0, Message(role="system", content=system_prompt))
        if c.response_format is not None:
            kw["response_format"] = c.response_format
        try:
            run = await manager.run_tools(messages, self.tools or [], max_steps=c.max_tool_steps,
                                          tool_choice=c.tool_choice, **kw)
        except ToolLoopLimit as exc:
            return task.reply(error=str(exc), attempts=tuple(a for step in exc.steps for a in step.attempts))
        return _run_message(task, run)

    async def _stream(self, task: TaskMessage, stream: Any) -> LLMResult:
        """Consume a stream, telling observers of each piece; the final result."""
        async with stream:
            async for chunk in stream:
                on_stream = self.on_stream
                if on_stream is not None and chunk.type in ("text", "reset"):
                    on_stream(task, "token" if chunk.type == "text" else "stream_reset", chunk.text)
        assert stream.result is not None
        return stream.result  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if self._owns_manager and self.manager is not None:  # a shared manager stays with its owner
            await self.manager.aclose()  # kept, closed: `initialize` opens it again

    def get_stats(self) -> dict[str, Any]:
        stats = super().get_stats()
        if self.manager is not None:
            stats["manager"] = self.manager.get_stats()
        return stats


def _result_message(task: TaskMessage, result: LLMResult) -> ResultMessage:
    return task.reply(
        result.content,
        model_name=result.model_name,
        provider=result.provider,
        usage=result.usage,
        cost=result.cost,
        latency=result.latency,
        attempts=tuple(result.attempts),
        data={"model": result.model, "finish_reason": result.finish_reason,
              "tool_calls": [call.model_dump(mode="json") for call in result.tool_calls], "parsed": result.parsed},
    )


def _run_message(task: TaskMessage, run: ToolRun) -> ResultMessage:
    """A tool loop's result: the last step's answer, usage and cost of all steps, every call made."""
    last = run.steps[-1]
    return task.reply(
        run.content,
        model_name=last.model_name,
        provider=last.provider,
        usage=run.usage,
        cost=run.cost,
        latency=sum(step.latency for step in run.steps),
        attempts=tuple(a for step in run.steps for a in step.attempts),
        data={"model": last.model, "finish_reason": last.finish_reason, "steps": len(run.steps),
              "tool_calls": [call.model_dump(mode="json") for step in run.steps for call in step.tool_calls],
              "parsed": last.parsed},
    )
