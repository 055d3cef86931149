"""The tool loop: ask the model, run the tools it calls, hand it the results, until it answers.

Each step is one `chat_with_tools` call (routing, fallback, re-asks: the manager's one attempt loop);
this module only runs the functions in between. A step's calls run concurrently, sync functions in a
worker thread so that a slow tool does not stall the event loop. What goes wrong inside a tool is
the model's to read, not the caller's: arguments that fail the tool's schema and exceptions a tool
raises come back to the model as `is_error` results, and the loop goes on.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
import anyio.to_thread
from pydantic import ValidationError
from pydantic_core import to_json

from amaos_llm.errors import InvalidRequest, ToolLoopLimit
from amaos_llm.inputs import chat_messages
from amaos_llm.tools import Tool, as_tools
from amaos_llm.types import LLMResult, Message, ToolCall, Usage

ChatWithTools = Callable[..., Awaitable[LLMResult]]
NOT_FORCING = ("auto", "none")


@dataclass(frozen=True, slots=True)
class ToolRun:
    """What `run_tools` ends with: the final answer, the whole conversation (every call and result,
    then the answer), each step's `LLMResult`, and usage and cost summed over the steps (cost None
    when one step's price is unknown)."""

    content: str
    messages: list[Message]
    steps: list[LLMResult]
    usage: Usage
    cost: Decimal | None


def runnable_tools(tools: Any) -> list[Tool]:
    """The tools, each with a function to run: a schema-only tool cannot take part in a tool loop."""
    checked = as_tools(tools)
    schema_only = [t.name for t in checked if t.fn is None]
    if schema_only:
        raise InvalidRequest(f"run_tools: tools {', '.join(map(repr, schema_only))} have no function to run; "
                             "give typed functions (or call chat_with_tools and run them yourself)")
    return checked


async def run_tools(
    chat_with_tools: ChatWithTools, messages: Any, tools: Any, *, max_steps: int = 8, **kw: Any
) -> ToolRun:
    """Up to `max_steps` model turns; a forcing `tool_choice` holds for the first only (held on, the
    model could never answer). `ToolLoopLimit` when the last step still calls tools."""
    checked = runnable_tools(tools)
    if type(max_steps) is not int or max_steps < 1:
        raise InvalidRequest(f"max_steps: must be an int >= 1, got {max_steps!r}")
    history = chat_messages(messages)
    by_name = {t.name: t for t in checked}
    choice = kw.pop("tool_choice", "auto")
    steps: list[LLMResult] = []
    for step in range(max_steps):
        result = await chat_with_tools(history, checked, tool_choice=choice if step == 0 else _after_first(choice),
                                       **kw)
        steps.append(result)
        history.append(Message(role="assistant", content=result.content, tool_calls=result.tool_calls or None))
        if not result.tool_calls:
            usage, cost = _totals(steps)
            return ToolRun(result.content, history, steps, usage, cost)
        history.extend(await run_calls(by_name, result.tool_calls))
    raise ToolLoopLimit(f"the model still called tools after max_steps={max_steps} steps",
                        steps=steps, messages=history)


def _after_first(choice: str) -> str:
    return choice if choice in NOT_FORCING else "auto"


async def run_calls(tools: dict[str, Tool], calls: Sequence[ToolCall]) -> list[Message]:
    """One step's calls, run concurrently; their results in the order of the calls."""
    results: list[Message | None] = [None] * len(calls)

    async def run(i: int, call: ToolCall) -> None:
        results[i] = await run_call(tools, call)

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return [r for r in results if r is not None]


async def run_call(tools: dict[str, Tool], call: ToolCall) -> Message:
    """The tool message answering `call`: the function's return value as text, or an `is_error` result."""
    tool = tools.get(call.name)
    if tool is None or tool.fn is None:  # chat_with_tools turns undeclared names down; kept as a guard
        return _result(call, f"no tool named {call.name!r}", error=True)
    try:
        kwargs = _arguments(tool, call.arguments)
    except ValidationError as exc:
        return _result(call, f"invalid arguments: {exc}", error=True)
    fn = tool.fn
    try:
        if inspect.iscoroutinefunction(fn):
            out = await fn(**kwargs)
        else:
            out = await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
            if inspect.isawaitable(out):
                out = await out
    except Exception as exc:  # the contract: a tool's own failure goes back to the model as an is_error result
        return _result(call, f"{type(exc).__name__}: {exc}", error=True)
    return _result(call, out if isinstance(out, str) else to_json(out, fallback=str).decode())


def _arguments(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments validated by the function's signature, as the values the function expects (a
    pydantic model parameter gets its instance, not the dict `model_dump` would make of it)."""
    model = tool.arguments_model
    if model is None:
        return dict(arguments)
    validated = model.model_validate(arguments)
    return {name: getattr(validated, name) for name in type(validated).model_fields}


def _result(call: ToolCall, content: str, *, error: bool = False) -> Message:
    return Message(role="tool", tool_call_id=call.id, name=call.name, content=content, is_error=error)


def _totals(steps: Sequence[LLMResult]) -> tuple[Usage, Decimal | None]:
    usage = steps[0].usage
    cost = steps[0].cost
    for result in steps[1:]:
        usage += result.usage
        cost = None if cost is None or result.cost is None else cost + result.cost
    return usage, cost


class ToolCalls:
    """The tool calls of `LLMManager` (a mixin, as `ManagerControls` is): each step is a `chat()`."""

    chat: Callable[..., Awaitable[LLMResult]]

    async def chat_with_tools(
        self,
        messages: Iterable[Any],
        tools: Sequence[Any],
        *,
        tool_choice: str = "auto",
        response_format: Any = None,
        force_model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        provider: str | None = None,
        max_cost: Any = None,
        budget: Any = None,
    ) -> LLMResult:
        """One model turn with `tools` (typed functions, dicts or `Tool`s) on offer: the answer, or
        the calls it asks for in `result.tool_calls` (`finish_reason` "tool_calls"). `tool_choice`:
        "auto", "required", "none" or a tool's name. A call of an undeclared tool, or with arguments
        that are not an object, is rejected and re-asked (`validation_retries`), then the next model
        answers; `provider`, `max_cost` and `budget` as in `chat()` (each step is held to them)."""
        return await self.chat(messages, provider, force_model=force_model, temperature=temperature,
                               max_tokens=max_tokens, tools=tools, tool_choice=tool_choice,
                               response_format=response_format, max_cost=max_cost, budget=budget)

    async def run_tools(
        self, messages: Iterable[Any], tools: Sequence[Any], *, max_steps: int = 8, **chat_with_tools_kw: Any
    ) -> ToolRun:
        """`chat_with_tools` steps, running the functions the model calls (a step's calls
        concurrently), until it answers: a `ToolRun`; `ToolLoopLimit` after `max_steps`."""
        return await run_tools(self.chat_with_tools, messages, tools, max_steps=max_steps, **chat_with_tools_kw)
