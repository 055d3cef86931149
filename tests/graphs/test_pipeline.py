import os
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from amaos_llm import ConfigError
from graphs import Pipeline, load_pipeline
from nodes import LLMManagerNode
from tests.support.backends import all_backends

# Tests that swap in an LLMManager stay on the default (asyncio) backend; the pure ones use @all_backends.
pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config" / "pipelines").glob("*.yaml"))


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def load_error(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    return str(caught.value).replace(str(path), "p.yaml")


GOOD = """
name: demo
nodes:
  - {id: prompt, type: prompt_template, config: {template: "Say: {input}"}}
  - {id: up, type: join}
  - {id: out, type: output}
edges:
  - {from: prompt, to: up}
  - {from: up, to: out}
"""


@all_backends
async def test_a_pipeline_runs_from_yaml(tmp_path):
    pipeline = load_pipeline(write(tmp_path, GOOD))
    run = await pipeline.run("hi")
    assert run.outputs["out"].content == "Say: hi"
    assert pipeline.name == "demo"


def test_pipeline_from_yaml_is_load_pipeline(tmp_path):
    pipeline = Pipeline.from_yaml(write(tmp_path, GOOD))
    assert list(pipeline.orchestrator.nodes) == ["prompt", "up", "out"]


def test_an_unknown_type_names_the_line_and_lists_known_types(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
          - {id: b, type: llm}
        """)
    assert message == ("p.yaml:4: nodes[1].type: unknown node type 'llm'; known types: "
                       "input, join, llm_manager, output, prompt_template, router")


def test_an_edge_to_an_unknown_node_names_its_line(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
          - {id: b, type: output}
        edges:
          - {from: a, to: b}
          - {from: b, to: c}
        """)
    assert message == "p.yaml:7: edges[1].to: unknown node 'c'; known nodes: a, b"


def test_a_cycle_names_the_edge_that_closes_it(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: join}
          - {id: b, type: join}
        edges:
          - {from: a, to: b}
          - {from: b, to: a}
        """)
    assert message.startswith("p.yaml:7: edges[1].to: edge 'b' → 'a' closes a cycle (a → b → a)")


def test_a_loop_is_allowed_when_a_node_sets_max_iterations(tmp_path):
    load_pipeline(write(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: join, config: {max_iterations: 3}}
          - {id: b, type: join}
        edges:
          - {from: a, to: b}
          - {from: b, to: a}
        """))


def test_a_bad_config_value_names_its_line_and_field(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - id: llm
            type: llm_manager
            config:
              local_only: true
              temperature: 7
        """)
    assert message == "p.yaml:7: nodes[0].config.temperature: Input should be less than or equal to 2"


def test_an_unknown_config_key_lists_the_allowed_ones(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: j, type: join, config: {sep: ","}}
        """)
    assert message == ("p.yaml:3: nodes[0].config.sep: unknown key 'sep'; allowed keys: "
                       "timeout, max_iterations, accepts_errors, separator")


def test_a_missing_field_names_its_place(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
        edges:
          - {from: a}
        """)
    assert message == "p.yaml:5: edges[0].to: required field is missing"


def test_a_duplicate_node_id_names_the_second_one(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
          - {id: a, type: output}
        """)
    assert message == "p.yaml:4: nodes[1].id: duplicate node id 'a'"


def test_a_bad_condition_names_its_line(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
          - {id: b, type: output}
        edges:
          - from: a
            to: b
            when: {regex: "("}
        """)
    assert message.startswith("p.yaml:8: edges[0].when.regex: invalid regular expression")


def test_a_route_of_a_non_router_is_rejected(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
          - {id: b, type: output}
        edges:
          - {from: a, to: b, when: "yes"}
        """)
    assert message == "p.yaml:6: edges[0].when: `when` names route 'yes', but 'a' is not a router"


def test_an_unquoted_yes_route_gets_a_quoting_hint(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
        edges:
          - {from: a, to: a, when: yes}
        """)
    assert message == 'p.yaml:5: edges[0].when: `when: true` reads as a boolean; quote a route name: when: "yes"'


def test_an_unquoted_yes_route_name_in_a_router_gets_a_quoting_hint(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - id: r
            type: router
            config:
              routes:
                yes: {contains: "yes"}
        """)
    assert message == ('p.yaml:7: nodes[0].config.routes: an unquoted route name yes/no/on/off/true/false '
                       'reads as the boolean true; quote it: "yes":')


def test_the_allowed_condition_keys_say_not_as_the_file_writes_it(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
          - {id: b, type: output}
        edges:
          - {from: a, to: b, when: {nott: {contains: x}}}
        """)
    assert message == ("p.yaml:6: edges[0].when.nott: unknown key 'nott'; allowed keys: field, route, equals, "
                       "contains, regex, is_null, one_of, all, any, not")


def test_an_unknown_key_inside_not_lists_the_condition_keys(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
          - {id: b, type: output}
        edges:
          - {from: a, to: b, when: {not: {contains: x, bogus: 1}}}
        """)
    assert message.startswith("p.yaml:6: edges[0].when.not.bogus: unknown key 'bogus'; allowed keys: field, route")


def test_an_unknown_edge_key_lists_from_and_to(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: a, type: input}
        edges:
          - {from: a, to: a, wehn: x}
        """)
    assert message == "p.yaml:5: edges[0].wehn: unknown key 'wehn'; allowed keys: from, to, when"



def test_invalid_yaml_names_its_line(tmp_path):
    message = load_error(tmp_path, "name: demo\nnodes: [\n  - a\n")
    assert message.startswith("p.yaml:3: invalid YAML")


def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path):
    assert load_error(tmp_path, "- a\n- b\n").startswith("p.yaml:1: a pipeline file holds a mapping")


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path):
    message = load_error(tmp_path, "name: !!python/object/apply:os.system ['true']\nnodes: []\n")
    assert "invalid YAML" in message


def test_relative_paths_resolve_against_the_yaml_file(tmp_path):
    sub = tmp_path / "pipelines"
    sub.mkdir()
    (tmp_path / "models.yaml").write_text("models: []\n")
    path = write(sub, """
        name: demo
        nodes:
          - {id: llm, type: llm_manager, config: {config_path: ../models.yaml}}
        """)
    node = load_pipeline(path).orchestrator.nodes["llm"]
    assert node.config.config_path == os.path.abspath(tmp_path / "models.yaml")


def test_a_missing_model_config_names_the_pipeline_line_and_field(tmp_path):
    message = load_error(tmp_path, """
        name: demo
        nodes:
          - {id: prompt, type: prompt_template, config: {template: "{input}"}}
          - id: llm
            type: llm_manager
            config:
              config_path: models.yaml
        """)
    assert message == (f"p.yaml:7: nodes[1].config.config_path: cannot read file {tmp_path / 'models.yaml'}: "
                       "No such file or directory")


def test_a_config_path_override_is_not_blamed_on_the_pipeline_file(tmp_path):
    path = write(tmp_path, """
        name: demo
        nodes:
          - {id: llm, type: llm_manager, config: {config_path: absent.yaml}}
        """)
    node = load_pipeline(path, config_path=ROOT / "config" / "model_priority.yaml").orchestrator.nodes["llm"]
    assert node.config.config_path == str(ROOT / "config" / "model_priority.yaml")


def test_cli_overrides_replace_llm_node_settings(tmp_path):
    path = write(tmp_path, """
        name: demo
        nodes:
          - {id: llm, type: llm_manager, config: {config_path: a.yaml, local_only: false}}
        """)
    node = load_pipeline(path, local_only=True, config_path=tmp_path / "b.yaml").orchestrator.nodes["llm"]
    assert (node.config.local_only, node.config.config_path) == (True, os.path.abspath(tmp_path / "b.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_dump_then_load_round_trips(example, tmp_path):
    original = load_pipeline(example)
    target = tmp_path / "elsewhere" / "copy.yaml"
    target.parent.mkdir()
    original.dump(target)
    again = load_pipeline(target)
    assert again.to_spec() == original.to_spec()
    assert again.to_yaml() == original.to_yaml()


def test_a_dumped_file_keeps_paths_relative(tmp_path):
    original = load_pipeline(ROOT / "config" / "pipelines" / "summarize.yaml")
    target = tmp_path / "copy.yaml"
    original.dump(target)
    expected = os.path.relpath(ROOT / "config" / "model_priority.yaml", tmp_path)
    assert f"config_path: {expected}" in target.read_text()


def test_a_pipeline_with_a_callable_condition_cannot_be_dumped(tmp_path):
    pipeline = load_pipeline(write(tmp_path, GOOD))
    pipeline.orchestrator.add_node(LLMManagerNode("extra"))
    pipeline.orchestrator.connect("out", "extra", lambda r: True)
    with pytest.raises(TypeError, match="callable `when`"):
        pipeline.to_yaml()


def test_from_spec_builds_from_a_dict():
    pipeline = Pipeline.from_spec({"name": "x", "nodes": [{"id": "a", "type": "input"}]})
    assert list(pipeline.orchestrator.nodes) == ["a"]


def test_from_spec_errors_name_the_field_without_a_file():
    with pytest.raises(ConfigError, match=r"^nodes\[0\]\.type: unknown node type"):
        Pipeline.from_spec({"name": "x", "nodes": [{"id": "a", "type": "nope"}]})


def test_pipeline_settings_configure_the_orchestrator(tmp_path):
    path = write(tmp_path, """
        name: demo
        settings: {max_concurrency: 4, node_timeout: 9, fail_fast: true}
        nodes:
          - {id: a, type: input}
        """)
    o = load_pipeline(path).orchestrator
    assert (o.max_concurrency, o.node_timeout, o.fail_fast) == (4, 9.0, True)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_load_and_point_at_the_shipped_model_config(example):
    pipeline = load_pipeline(example)
    llm_nodes = [n for n in pipeline.orchestrator.nodes.values() if isinstance(n, LLMManagerNode)]
    assert llm_nodes
    for node in llm_nodes:
        # A node naming a shared manager takes its configuration from that `managers:` entry.
        source = pipeline.manager_specs[node.config.manager] if node.config.manager else node.config
        assert Path(source.config_path) == ROOT / "config" / "model_priority.yaml"
        assert source.local_only is True


async def test_the_triage_example_fans_out_joins_and_routes(tmp_path):
    pipeline = load_pipeline(ROOT / "config" / "pipelines" / "triage.yaml")
    calls = []

    def fake(messages, **params):
        calls.append(messages[0].content)
        return {"content": f"reply {len(calls)}", "input_tokens": 10, "output_tokens": 5}

    for node in pipeline.orchestrator.nodes.values():
        if isinstance(node, LLMManagerNode):
            node.manager = _callable_manager(fake)
    run = await pipeline.run("My order is late")
    assert set(run.outputs) == {"done"} and run.skipped == ("fallback",)
    assert run.total_tokens == 45 and run.total_cost == Decimal(0)
    assert "Draft A: reply" in run.results["judge_prompt"].content


async def test_the_triage_example_routes_a_failure_to_its_fallback():
    pipeline = load_pipeline(ROOT / "config" / "pipelines" / "triage.yaml")

    def down(messages, **params):
        raise ConnectionError("no model")

    for node in pipeline.orchestrator.nodes.values():
        if isinstance(node, LLMManagerNode):
            node.manager = _callable_manager(down)
    run = await pipeline.run("My order is late")
    assert run.outputs["fallback"].content == "Thanks for your ticket; a person will reply shortly."
    assert set(run.errors) == {"formal", "friendly"}


def _callable_manager(fn):
    from amaos_llm import LLMManager

    manager = LLMManager(models=[])
    manager.register_model("fake", fn, max_retries=0)
    return manager


@all_backends
async def test_a_graph_built_in_code_dumps_and_loads_back(tmp_path):
    from graphs import GraphOrchestrator
    from nodes import JoinNode, OutputNode, PromptTemplateNode, RouterNode

    o = GraphOrchestrator(node_timeout=5)
    o.add_node(PromptTemplateNode("p", config={"template": "Q: {input}"}))
    o.add_node(RouterNode("r", config={"routes": {"long": {"regex": ".{20,}"}}, "default": "short"}))
    o.add_node(JoinNode("j"))
    o.add_node(OutputNode("out"))
    o.connect("p", "r")
    o.connect("r", "j", "long")
    o.connect("r", "out", {"field": "route", "equals": "short"})
    o.connect("j", "out")
    Pipeline(o, name="coded").dump(tmp_path / "coded.yaml")
    loaded = load_pipeline(tmp_path / "coded.yaml")
    assert loaded.to_spec() == Pipeline(o, name="coded").to_spec()
    assert (await loaded.run("hi")).outputs["out"].content == "Q: hi"
