"""Nodes: the units a graph runs. Each takes a `TaskMessage` and returns one `ResultMessage`.

    from nodes import LLMManagerNode, FunctionNode, PromptTemplateNode

See `nodes.base` for the contract a custom node follows, `nodes.conditions` for the `when:`
conditions, `nodes.registry` for the `type` names a YAML pipeline may use.
"""

from nodes.base import Node, NodeConfig, NodeStats
from nodes.conditions import Condition, Predicate
from nodes.flow import JoinNode, RouterNode
from nodes.function import FunctionNode
from nodes.llm import LLMManagerNode
from nodes.messages import Payload, ResultMessage, TaskMessage
from nodes.registry import ENTRY_POINT_GROUP, known_node_types, node_class, register_node_type
from nodes.text import InputNode, OutputNode, PromptTemplateNode

__all__ = [
    "ENTRY_POINT_GROUP",
    "Condition",
    "FunctionNode",
    "InputNode",
    "JoinNode",
    "LLMManagerNode",
    "Node",
    "NodeConfig",
    "NodeStats",
    "OutputNode",
    "Payload",
    "Predicate",
    "PromptTemplateNode",
    "ResultMessage",
    "RouterNode",
    "TaskMessage",
    "known_node_types",
    "node_class",
    "register_node_type",
]
