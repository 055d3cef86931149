"""Nodes that steer the flow: a router picks a route, a join gathers a fan-out."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from nodes.base import Node, NodeConfig
from nodes.conditions import Condition
from nodes.messages import ResultMessage, TaskMessage, trusted


class RouterConfig(NodeConfig):
    accepts_errors: bool = True  # routing a failure somewhere is a router's job
    routes: dict[str, Condition] = Field(min_length=1)  # tried in order; the first that holds wins
    default: str | None = None  # the route when none holds (None: only unconditional edges fire)

    @field_validator("routes", mode="before")
    @classmethod
    def _names_are_not_booleans(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `yes:` key as True; pydantic would only say "[key]: not a string".
        for name in value if isinstance(value, dict) else ():
            if isinstance(name, bool):
                raise ValueError(
                    f"an unquoted route name yes/no/on/off/true/false reads as the boolean {str(name).lower()}; "
                    f"quote it: \"{'yes' if name else 'no'}\":"
                )
        return value

    @model_validator(mode="after")
    def _default_is_new(self) -> RouterConfig:
        if self.default is not None and self.default in self.routes:
            raise ValueError(f"default route {self.default!r} is already a conditional route")
        return self


class RouterNode(Node):
    """Passes its input on with `route` set to the first route whose condition holds.

    Edges leave a router with `when: ROUTE_NAME` (or `when: {route: ROUTE_NAME}`); an edge with
    no `when` fires whatever the route. A failed input is routed too (its error passed on), so a
    route such as `{field: error, is_null: false}` can send failures to a handler.
    """

    type_name = "router"
    Config = RouterConfig
    config: RouterConfig
    input_type = Any
    output_type = Any
    max_inputs = 1

    def __init__(self, id: str, name: str | None = None, config: Any = None) -> None:
        super().__init__(id, name, config)
        self._tests = [(route, cond.compile()) for route, cond in self.config.routes.items()]

    @property
    def route_names(self) -> tuple[str, ...]:
        names = tuple(self.config.routes)
        return names if self.config.default is None else (*names, self.config.default)

    async def handle(self, task: TaskMessage) -> ResultMessage:
        # A root router judges the run's input as if it were an upstream result.
        subject = task.inputs[0] if task.inputs else task.reply(task.payload.text)
        route = next((name for name, test in self._tests if test(subject)), self.config.default)
        return task.reply(subject.content, route=route, error=subject.error, data=dict(subject.data))


class JoinConfig(NodeConfig):
    separator: str = "\n\n"


class JoinNode(Node):
    """Fan-in: waits for all its inputs and joins their contents with `separator`, in edge order.

    `data` maps each input's node id to its content.
    """

    type_name = "join"
    Config = JoinConfig
    config: JoinConfig
    input_type = Any

    async def handle(self, task: TaskMessage) -> ResultMessage:
        inputs = task.inputs
        content = self.config.separator.join(r.content for r in inputs)
        return trusted(
            ResultMessage, task_id=task.task_id, run_id=task.run_id, node_id=task.node_id, content=content,
            data={r.node_id: r.content for r in inputs},
        )
