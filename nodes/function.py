"""`FunctionNode`: a Python callable as a node (code only; a YAML file cannot name a callable)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from nodes.base import Node, NodeConfig
from nodes.messages import Payload, ResultMessage, TaskMessage

NodeFunction = Callable[[Any], Any]

# Keys of a returned dict that set result fields; any other key lands in `data`.
_RESULT_KEYS = frozenset({"content", "error", "route", "data"})


class FunctionNode(Node):
    """Calls `fn` (sync or async) with the upstream `ResultMessage` (a list of them when the
    node has several inputs; the run's `Payload` when it is a root).

    `fn` returns a `str` (the content), a dict (`content`, `error`, `route` and `data` set those
    fields; other keys are merged into `data`) or a `ResultMessage`. An exception becomes this
    node's error result. A sync `fn` runs on the event loop, so it must not block.
    """

    type_name = "function"

    def __init__(
        self,
        id: str,
        fn: NodeFunction,
        name: str | None = None,
        *,
        input_type: Any = Any,
        output_type: Any = Any,
        accepts_errors: bool = False,
        timeout: float | None = None,
        max_iterations: int | None = None,
        config: Mapping[str, Any] | NodeConfig | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionNode {id!r}: fn must be callable, got {type(fn).__name__}")
        settings = dict(config.model_dump() if isinstance(config, NodeConfig) else config or {})
        if timeout is not None:
            settings["timeout"] = timeout
        if max_iterations is not None:
            settings["max_iterations"] = max_iterations
        if accepts_errors:
            settings["accepts_errors"] = True
        super().__init__(id, name, settings)
        self.fn = fn
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))
        self.input_type, self.output_type = input_type, output_type

    async def handle(self, task: TaskMessage) -> ResultMessage:
        inputs = task.inputs
        arg: ResultMessage | list[ResultMessage] | Payload = (
            inputs[0] if len(inputs) == 1 else list(inputs) if inputs else task.payload
        )
        if self._is_async:
            out = await self.fn(arg)
        else:
            out = self.fn(arg)
            if inspect.isawaitable(out):  # a sync callable may still hand back an awaitable
                out = await out
        if type(out) is str:
            return task.reply(out)
        if isinstance(out, str):
            return task.reply(str(out))
        if isinstance(out, ResultMessage):
            return _readdress(out, task)
        if isinstance(out, Mapping):
            return _merged(out, task)
        raise TypeError(f"function returned {type(out).__name__}; expected str, dict or ResultMessage")

    def to_spec(self) -> dict[str, Any]:
        raise TypeError(
            f"node {self.id!r} wraps a Python callable and cannot be written to YAML; "
            "make it a Node subclass registered under the `amaos.nodes` entry points"
        )


def _readdress(out: ResultMessage, task: TaskMessage) -> ResultMessage:
    """A returned result becomes this task's. An upstream result passed on keeps its content but
    not its LLM usage and cost: each model call is counted once, at the node that made it."""
    if any(out.task_id == r.task_id for r in task.inputs):
        return task.reply(out.content, error=out.error, route=out.route, data=dict(out.data))
    return out.model_copy(update={"task_id": task.task_id, "run_id": task.run_id, "node_id": task.node_id})


def _merged(out: Mapping[str, Any], task: TaskMessage) -> ResultMessage:
    fields = {k: v for k, v in out.items() if k in _RESULT_KEYS}
    extra = {k: v for k, v in out.items() if k not in _RESULT_KEYS}
    if extra:
        fields["data"] = {**dict(fields.get("data") or {}), **extra}
    try:
        return ResultMessage.model_validate(
            {"task_id": task.task_id, "run_id": task.run_id, "node_id": task.node_id, **fields}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TypeError(f"function returned a dict with a bad {where!r}: {first['msg']}") from None
