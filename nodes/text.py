"""Nodes that shape text: the run's input, prompt templates, the outputs a pipeline returns."""

from __future__ import annotations

import string
from typing import Any

from pydantic import field_validator

from nodes.base import Node, NodeConfig
from nodes.messages import ResultMessage, TaskMessage


class InputNode(Node):
    """Emits the run's input text (the prompt, or the last user message of a chat)."""

    type_name = "input"

    async def handle(self, task: TaskMessage) -> ResultMessage:
        return task.reply(task.content)


class OutputNode(Node):
    """Marks what a pipeline returns: its input's content and data, passed on unchanged."""

    type_name = "output"
    output_type = Any

    async def handle(self, task: TaskMessage) -> ResultMessage:
        inputs = task.inputs
        if len(inputs) == 1:
            only = inputs[0]
            return task.reply(only.content, route=only.route, data=dict(only.data))
        return task.reply(task.content, data={r.node_id: r.content for r in inputs})


class TemplateConfig(NodeConfig):
    template: str

    @field_validator("template")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"invalid template: {exc} (write {{{{ and }}}} for literal braces)") from None
        return value


class PromptTemplateNode(Node):
    """Renders `template` with `str.format` fields:

    - `{input}`: the run's input text
    - `{content}`: the upstream content (several inputs joined by blank lines)
    - `{NODE_ID.content}` (or any other result field, e.g. `{NODE_ID.model_name}`): one upstream result
    - `{data[key]}`: a key of the upstream results' data; `{metadata[key]}`: of the run's metadata
    """

    type_name = "prompt_template"
    Config = TemplateConfig
    config: TemplateConfig

    async def handle(self, task: TaskMessage) -> ResultMessage:
        fields: dict[str, Any] = {r.node_id: r for r in task.inputs}
        data: dict[str, Any] = {}
        for r in task.inputs:
            data.update(r.data)
        fields.update(input=task.payload.text, content=task.content, data=data, metadata=task.metadata)
        try:
            text = self.config.template.format_map(fields)
        except KeyError as exc:
            known = ", ".join(sorted(fields))
            return task.fail(f"template field {{{exc.args[0]}}} is unknown here; available: {known}")
        except (AttributeError, IndexError) as exc:
            return task.fail(f"template field not found: {exc}")
        return task.reply(text)
