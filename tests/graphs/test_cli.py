import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amaos_llm import ConfigError, Usage
from graphs.cli import app
from nodes import Node, register_node_type
from nodes.registry import _registered

ROOT = Path(__file__).resolve().parents[2]


class FakeLLMNode(Node):
    """Answers like an LLM node would, without a model: upper-cases, 3 in / 4 out tokens, $0.0015."""

    type_name = "fake_llm"

    async def handle(self, task):
        if "fail" in task.content:
            return task.fail("model unavailable")
        return task.reply(task.content.upper(), model_name="fake-model", provider="fake",
                          usage=Usage(input_tokens=3, output_tokens=4), cost=Decimal("0.0015"), latency=0.25)


@pytest.fixture(autouse=True)
def fake_llm_type():
    register_node_type(FakeLLMNode)
    yield
    _registered.clear()


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def pipeline(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""
        name: shout
        nodes:
          - {id: prompt, type: prompt_template, config: {template: "say {input}"}}
          - {id: llm, type: fake_llm}
          - {id: out, type: output}
        edges:
          - {from: prompt, to: llm}
          - {from: llm, to: out}
        """))
    return path


def test_run_one_input_prints_the_answer_and_the_llm_call(runner, pipeline):
    result = runner.invoke(app, ["run", str(pipeline), "--input", "hello"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "SAY HELLO"
    assert lines[2].split() == ["llm", "fake-model", "fake", "3/4", "$0.001500", "0.25s"]
    assert lines[3].startswith("total: 7 tokens, $0.001500")


def test_run_writes_a_json_record_with_output(runner, pipeline, tmp_path):
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["run", str(pipeline), "--input", "hello", "--output", str(out)])
    assert result.exit_code == 0
    record = json.loads(out.read_text())
    assert (record["output"], record["ok"], record["cost"], record["tokens"]) == ("SAY HELLO", True, 0.0015, 7)
    assert record["llm"]["llm"]["model"] == "fake-model"


def test_a_failed_run_exits_1_and_says_why_once_on_stderr(runner, pipeline):
    result = runner.invoke(app, ["run", str(pipeline), "--input", "fail please"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: llm failed: model unavailable"]
    assert "model unavailable" not in result.stdout


def test_run_over_a_jsonl_file_writes_one_record_per_line(runner, pipeline, tmp_path):
    inputs = tmp_path / "tasks.jsonl"
    inputs.write_text('"one"\n\n{"input": "two", "id": 7}\n{"input": "three", "temperature": 0.0}\n')
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["run", str(pipeline), "--inputs", str(inputs), "--output", str(out),
                                 "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    records = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["index"])
    assert [r["output"] for r in records] == ["SAY ONE", "SAY TWO", "SAY THREE"]
    assert records[1]["metadata"] == {"id": 7}
    assert "3 runs, 0 failed, $0.004500" in result.stderr


def test_a_batch_with_a_failed_task_exits_1(runner, pipeline, tmp_path):
    inputs = tmp_path / "tasks.jsonl"
    inputs.write_text('"fine"\n"fail"\n')
    result = runner.invoke(app, ["run", str(pipeline), "--inputs", str(inputs)])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["ok"] for r in records) == [False, True]


def test_a_bad_jsonl_line_is_reported_with_its_line_number(runner, pipeline, tmp_path):
    inputs = tmp_path / "tasks.jsonl"
    inputs.write_text('"fine"\n{"input": \n')
    result = runner.invoke(app, ["run", str(pipeline), "--inputs", str(inputs)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {inputs}:2: invalid JSON: Expecting value (column 11)"


def test_a_jsonl_object_needs_an_input(runner, pipeline, tmp_path):
    inputs = tmp_path / "tasks.jsonl"
    inputs.write_text('{"text": "x"}\n')
    result = runner.invoke(app, ["run", str(pipeline), "--inputs", str(inputs)])
    assert "each line must be a JSON string or an object with an `input` field" in result.stderr


def test_run_needs_exactly_one_input_source(runner, pipeline):
    assert runner.invoke(app, ["run", str(pipeline)]).exit_code == 2


def test_validate_accepts_a_good_pipeline_and_config(runner):
    for path in ("config/pipelines/triage.yaml", "config/model_priority.yaml"):
        result = runner.invoke(app, ["validate", str(ROOT / path)])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("ok: ")


def test_validate_prints_one_line_for_a_bad_file(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - {id: a, type: nope}\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {bad}:3: nodes[0].type: unknown node type 'nope'; known types: fake_llm, input, join, "
        "llm_manager, output, prompt_template, router"
    ]


def test_debug_shows_the_exception(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - {id: a, type: nope}\n")
    result = runner.invoke(app, ["validate", str(bad), "--debug"])
    assert isinstance(result.exception, ConfigError)


def test_validate_checks_the_model_config_a_pipeline_names(runner, tmp_path):
    (tmp_path / "models.yaml").write_text("models:\n  - {name: m, provider: nope}\n")
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nnodes:\n  - {id: llm, type: llm_manager, config: {config_path: models.yaml}}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "models.yaml:2: models[0].provider: unknown provider 'nope'" in result.stderr


def test_graph_prints_mermaid(runner, pipeline):
    result = runner.invoke(app, ["graph", str(pipeline)])
    assert result.exit_code == 0
    assert "flowchart TD" in result.stdout and "    prompt --> llm" in result.stdout


@pytest.fixture
def models_config(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent("""
        models:
          - {name: local-fn, provider: callable, priority: 3}
          - {name: cloud, provider: openai, model: gpt-4o-mini, api_key_env: AMAOS_TEST_NO_SUCH_KEY}
        """))
    return path


def test_models_lists_the_configured_models(runner, models_config):
    result = runner.invoke(app, ["models", "--config", str(models_config), "--local-only"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in result.stdout.splitlines() if line.startswith("│")}
    assert rows["local-fn"] == ["local", "callable", "3", "0/0", "n/a", "yes"]
    assert rows["cloud"][:2] == ["cloud", "openai"]
    assert rows["cloud"][4:] == ["missing", "skipped (local only)"]


def test_complete_reports_a_failed_call_in_one_line(runner, models_config):
    result = runner.invoke(app, ["complete", "hi", "--config", str(models_config), "--local-only"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: all models failed")
    assert "Traceback" not in result.output


def test_complete_names_the_variable_that_named_a_missing_config(runner):
    result = runner.invoke(app, ["complete", "hi"], env={"AMAOS_LLM_CONFIG": "/nope.yaml"})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: $AMAOS_LLM_CONFIG=/nope.yaml: cannot read file: No such file or directory"
    ]


def test_the_module_runs_as_a_command():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "graphs.cli", "validate", "config/pipelines/offline_agent.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok: pipeline 'offline_agent': 4 nodes, 3 edges")


def test_validate_local_only_refuses_a_config_without_local_models(tmp_path: Path) -> None:
    cloud_only = tmp_path / "cloud.yaml"
    cloud_only.write_text("models:\n  - {name: gpt, provider: openai}\n")
    result = CliRunner().invoke(app, ["validate", str(cloud_only), "--local-only"])
    assert result.exit_code == 2
    assert "no enabled model has `source: local`" in result.output
