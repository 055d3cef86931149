import importlib.metadata

import pytest

import nodes
from amaos_llm import ConfigError
from nodes import LLMManagerNode, Node, known_node_types, node_class, register_node_type
from nodes.registry import _plugins, _registered

BUILT_IN = ["input", "join", "llm_manager", "output", "prompt_template", "router"]


class ShoutNode(Node):
    type_name = "shout"

    async def handle(self, task):
        return task.reply(task.content.upper())


@pytest.fixture
def plugins(monkeypatch):
    """Entry points as a plugin package would declare them."""

    def declare(**targets):
        eps = [importlib.metadata.EntryPoint(name, value, "amaos.nodes") for name, value in targets.items()]
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps if group == "amaos.nodes" else [])
        _plugins.cache_clear()

    yield declare
    _plugins.cache_clear()


@pytest.fixture(autouse=True)
def clean_registrations():
    yield
    _registered.clear()


def test_the_built_in_types_are_known():
    assert known_node_types() == BUILT_IN


def test_a_type_name_resolves_to_its_class():
    assert node_class("llm_manager") is LLMManagerNode


def test_an_unknown_type_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        node_class("llm")
    assert str(caught.value) == f"unknown node type 'llm'; known types: {', '.join(BUILT_IN)}"


def test_function_nodes_are_not_loadable_from_yaml():
    with pytest.raises(ConfigError, match="wrap a Python callable"):
        node_class("function")


def test_an_entry_point_plugin_adds_a_type(plugins):
    plugins(shout=f"{__name__}:ShoutNode")
    assert node_class("shout") is ShoutNode
    assert "shout" in known_node_types()


def test_a_plugin_cannot_shadow_a_built_in(plugins):
    plugins(output=f"{__name__}:ShoutNode")
    assert node_class("output") is nodes.OutputNode


def test_a_plugin_that_is_not_a_node_is_rejected(plugins):
    plugins(bad="builtins:dict")
    with pytest.raises(ConfigError, match="not a Node subclass"):
        node_class("bad")


def test_register_node_type_makes_a_class_loadable():
    register_node_type(ShoutNode)
    assert node_class("shout") is ShoutNode


def test_a_registration_cannot_replace_a_built_in():
    with pytest.raises(ValueError, match="built in"):
        register_node_type(ShoutNode, "router")
