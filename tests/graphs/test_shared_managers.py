"""A pipeline's `managers:`: one manager per entry shared by its nodes (budget, stats), closed and
reopened with the pipeline, overridden by the CLI's options, written back by `dump`, and every
mistake in it a ConfigError naming file, line and field."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from amaos_llm import AllModelsFailed, ConfigError
from graphs import load_pipeline
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio
D = Decimal


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def models(tmp_path: Path, openai_fake: OpenAIFake) -> Path:
    # The fake bills words: input = the words of the prompt, output = the words of the reply.
    openai_fake.reply = "two words"
    return write(tmp_path / "models.yaml", f"""
        defaults: {{max_retries: 0, max_tokens: 20}}
        models:
          - {{name: cloud, provider: openai, model: test-model, base_url: '{openai_fake.url}', api_key: k,
              cost_per_1k_input: 1, cost_per_1k_output: 2}}
        """)


SHARED = """
    name: shared
    settings: {budget_usd: 5}
    managers:
      cloud: {config_path: models.yaml, budget_usd: 2}
    nodes:
      - {id: first, type: llm_manager, config: {manager: cloud}}
      - {id: second, type: llm_manager, config: {manager: cloud, budget_usd: 0.5}}
    edges:
      - {from: first, to: second}
    """


async def test_two_nodes_naming_one_entry_share_its_manager_budget_and_stats(tmp_path, models):
    pipeline = load_pipeline(write(tmp_path / "p.yaml", SHARED))
    first, second = pipeline.orchestrator.nodes["first"], pipeline.orchestrator.nodes["second"]
    shared = pipeline.managers["cloud"]
    assert first.manager is shared and second.manager is shared
    async with pipeline:
        run = await pipeline.run("three words here")
    # first: 3 words in, 2 out = $0.007; second reads "two words": 2 in, 2 out = $0.006
    assert run.cost_by_node == {"first": D("0.007"), "second": D("0.006")}
    stats = shared.get_stats()
    assert stats["calls"] == 2
    assert stats["budget"] == {"limit": D(2), "spent": D("0.013"), "reserved": D(0), "remaining": D("1.987")}
    assert (run.budget_usd, run.budget_remaining) == (D(5), D(5) - D("0.013"))


async def test_the_shared_manager_closes_with_the_pipeline_and_reopens_with_its_state(tmp_path, models, openai_fake):
    pipeline = load_pipeline(write(tmp_path / "p.yaml", SHARED))
    shared = pipeline.managers["cloud"]
    async with pipeline:
        await pipeline.run("three words here")
    with pytest.raises(AllModelsFailed, match="the manager is closed"):
        await shared.complete("x")
    async with pipeline:
        await pipeline.run("three words here")
    await pipeline.run("three words here")  # still open inside and after a run
    await pipeline.aclose()
    await pipeline.run("three words here")  # a run after aclose opens it again
    await pipeline.aclose()
    assert shared.get_stats()["budget"]["spent"] == 4 * D("0.013")
    assert len(openai_fake.requests) == 8


async def test_iter_runs_on_a_closed_pipeline_reopens_its_managers_with_their_state(tmp_path, models, openai_fake):
    pipeline = load_pipeline(write(tmp_path / "p.yaml", SHARED))
    async with pipeline:
        await pipeline.run("three words here")
    async with pipeline.iter_runs(["three words here"] * 3, 2) as runs:  # closed: reopened, as run() does
        results = [run async for _, run in runs]
    assert [r.ok for r in results] == [True] * 3 and not results[0].errors
    await pipeline.aclose()
    async with pipeline.orchestrator.iter_runs(["three words here"], 1) as runs:  # the orchestrator's too
        assert [r.ok async for _, r in runs] == [True]
    await pipeline.aclose()
    assert pipeline.managers["cloud"].get_stats()["budget"]["spent"] == 5 * D("0.013")
    assert len(openai_fake.requests) == 10


async def test_a_closed_orchestrator_runs_again_with_its_nodes_own_managers_and_their_stats(tmp_path, models):
    from graphs import GraphOrchestrator
    from nodes import LLMManagerNode

    orchestrator = GraphOrchestrator()
    node = await orchestrator.register_node(LLMManagerNode("llm", config={"config_path": str(models)}))
    async with orchestrator:
        assert (await orchestrator.run("three words here")).ok
    manager = node.manager
    for again in range(2):  # after aclose: iter_runs, then run, each reopening the same manager
        if again:
            assert (await orchestrator.run("three words here")).ok
        else:
            async with orchestrator.iter_runs(["three words here"], 1) as runs:
                assert [r.ok async for _, r in runs] == [True]
        await orchestrator.aclose()
        assert node.manager is manager
    assert manager is not None and manager.get_stats()["calls"] == 3


def test_cli_overrides_reach_every_entry_and_nodes_naming_one_keep_none(tmp_path, models):
    other = write(tmp_path / "other.yaml", models.read_text())
    pipeline = load_pipeline(write(tmp_path / "p.yaml", SHARED), local_only=True, config_path=other)
    entry = pipeline.manager_specs["cloud"]
    assert (entry.config_path, entry.local_only, entry.budget_usd) == (str(other), True, 2)
    node = pipeline.orchestrator.nodes["second"].config
    assert (node.manager, node.config_path, node.local_only, node.budget_usd) == ("cloud", None, None, 0.5)


def test_dump_writes_the_managers_back_with_relative_paths(tmp_path, models):
    original = load_pipeline(write(tmp_path / "p.yaml", SHARED))
    target = tmp_path / "elsewhere" / "copy.yaml"
    target.parent.mkdir()
    original.dump(target)
    spec = original.to_spec(relative_to=target.parent)
    assert spec["managers"] == {"cloud": {"config_path": "../models.yaml", "budget_usd": 2.0}}
    assert spec["settings"] == {"budget_usd": 5.0}
    assert spec["nodes"][1]["config"] == {"manager": "cloud", "budget_usd": 0.5}
    again = load_pipeline(target)
    assert again.to_spec() == original.to_spec()
    assert again.manager_specs == original.manager_specs


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "p.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    return str(caught.value).replace(str(path), "p.yaml")


@pytest.mark.parametrize(("text", "expected"), [
    ("""
     name: x
     managers: {a: {}, b: {}}
     nodes:
       - {id: n, type: llm_manager, config: {manager: c}}
     """, "p.yaml:4: nodes[0].config.manager: unknown manager 'c'; known managers: a, b"),
    ("""
     name: x
     nodes:
       - {id: n, type: llm_manager, config: {manager: c}}
     """, "p.yaml:3: nodes[0].config.manager: unknown manager 'c'; known managers: (none: add a top-level "
          "`managers:` mapping)"),
    ("""
     name: x
     managers: {a: {}}
     nodes:
       - id: n
         type: llm_manager
         config: {manager: a, config_path: m.yaml}
     """, "p.yaml:6: nodes[0].config.config_path: `manager` and `config_path` together: set config_path on "
          "the `managers:` entry 'a'"),
    ("""
     name: x
     managers:
       a:
         config_path: models.yaml
         budget: 3
     nodes:
       - {id: n, type: input}
     """, "p.yaml:5: managers.a.budget: unknown key"),
    ("""
     name: x
     managers:
       a: {budget_usd: -1}
     nodes:
       - {id: n, type: input}
     """, "p.yaml:3: managers.a.budget_usd:"),
    ("""
     name: x
     settings: {budget_usd: -0.5}
     nodes:
       - {id: n, type: input}
     """, "p.yaml:2: settings.budget_usd:"),
    ("""
     name: x
     managers: {a: {}}
     nodes:
       - {id: n, type: llm_manager, config: {manager: a, budget_usd: -2}}
     """, "p.yaml:4: nodes[0].config.budget_usd:"),
    ("""
     name: x
     managers: {a: {}}
     nodes:
       - {id: n, type: llm_manager, config: {manager: a, local_only: true}}
     """, "p.yaml:4: nodes[0].config: `manager` and `local_only` together: set local_only on the `managers:` "
          "entry 'a'"),
    ("""
     name: x
     managers:
       a: {config_path: missing.yaml}
     nodes:
       - {id: n, type: input}
     """, "p.yaml:3: managers.a.config_path: cannot read file"),
])
def test_mistakes_in_managers_are_config_errors_naming_file_line_and_field(tmp_path, models, text, expected):
    assert load_error(tmp_path, text).startswith(expected)


def test_a_manager_budget_on_memory_state_cannot_be_split_over_workers_but_run_budgets_can(tmp_path, models):
    from graphs import executors

    shared = load_pipeline(write(tmp_path / "p.yaml", SHARED))
    assert executors._shared_state_required(shared) == (
        "node 'first': its manager's budget $2.0 needs `state: {backend: redis}`")
    per_run = load_pipeline(write(tmp_path / "q.yaml", SHARED.replace(", budget_usd: 2}", "}")))
    assert executors._shared_state_required(per_run) is None  # settings and node budgets are per run
    # the keys of the entry's model file (one OpenAI model), not of the packaged default's many
    assert executors._key_env_names(per_run) == ["AMAOS_LLM_CONFIG", "OPENAI_API_KEY"]
