"""`amaos-llm run P --budget USD`: one cap for the whole command, the cost tables it ends with, and
its exit codes; over real HTTP to the OpenAI fake, priced in the model YAML."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amaos_llm import LLMManager
from graphs.cli import app
from tests.support.fakes import OpenAIFake

D = Decimal
PROMPT = "one two three"
# The fake bills words: 3 in, and "two words" out. cheap: 3 × $0.001 + 2 × $0.002.
CHEAP_COST = D("0.007")
DEAR_COST = D("0.05")  # 3 × $0.01 + 2 × $0.01


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


@pytest.fixture
def files(tmp_path: Path, openai_fake: OpenAIFake) -> dict[str, Path]:
    openai_fake.reply = "two words"
    models = tmp_path / "models.yaml"
    models.write_text(textwrap.dedent(f"""
        defaults: {{max_retries: 0, max_tokens: 20}}
        models:
          - {{name: dear, provider: openai, model: big, base_url: '{openai_fake.url}', api_key: k, priority: 2,
              cost_per_1k_input: 10, cost_per_1k_output: 10}}
          - {{name: cheap, provider: openai, model: small, base_url: '{openai_fake.url}', api_key: k, priority: 1,
              cost_per_1k_input: 1, cost_per_1k_output: 2}}
        """))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(textwrap.dedent("""
        name: budgeted
        managers:
          m: {config_path: models.yaml}
        nodes:
          - {id: llm, type: llm_manager, config: {manager: m}}
          - {id: out, type: output}
        edges:
          - {from: llm, to: out}
        """))
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(PROMPT) + "\n" for _ in range(3)))
    return {"models": models, "pipeline": pipeline, "inputs": inputs}


def worst_case(models: Path, name: str) -> Decimal:
    estimates = LLMManager.from_yaml(models).estimate(PROMPT, max_tokens=20)
    return next(e.worst_case for e in estimates if e.model_name == name)


def test_budget_caps_all_runs_together_downgrades_then_refuses_and_exits_1(files, openai_fake):
    cheap = worst_case(files["models"], "cheap")
    assert worst_case(files["models"], "dear") > D("0.2")
    budget = 2 * CHEAP_COST + cheap - D("0.0001")  # two cheap answers, then no room for a third's worst case
    result = CliRunner().invoke(app, ["run", str(files["pipeline"]), "--inputs", str(files["inputs"]),
                                      "--concurrency", "1", "--budget", str(budget)])
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["ok"] for r in records] == [True, True, False]
    assert records[2]["errors"]["llm"].startswith("over budget (run): worst case $")
    err = rows(result.stderr)
    assert ["llm", "3", "1", "10", "$0.014000", "2"] in err  # calls, failed, tokens, cost, downgraded
    assert ["cheap", "2", "0", "10", "$0.014000"] in err
    assert not any(row and row[0] == "dear" for row in err)  # skipped every time: never called
    remaining = budget - 2 * CHEAP_COST
    assert result.stderr.splitlines()[-1] == f"budget ${budget:.2f}: spent $0.0140, remaining ${remaining:.4f}"
    assert [r.body["model"] for r in openai_fake.requests] == ["small", "small"]


def test_one_input_under_a_roomy_budget_shows_the_tables_on_stdout_and_exits_0(files):
    result = CliRunner().invoke(app, ["run", str(files["pipeline"]), "--input", PROMPT, "--budget", "1"])
    assert result.exit_code == 0, result.output
    out = rows(result.stdout)
    assert ["llm", "1", "0", "5", "$0.050000", "0"] in out
    assert ["dear", "1", "0", "5", "$0.050000"] in out
    assert result.stdout.splitlines()[-1] == "budget $1.00: spent $0.0500, remaining $0.9500"
    assert "budget $" not in result.stderr


def test_without_budget_there_are_no_cost_tables(files):
    result = CliRunner().invoke(app, ["run", str(files["pipeline"]), "--input", PROMPT])
    assert result.exit_code == 0, result.output
    assert "cost by node" not in result.output and "budget $" not in result.output


def test_a_negative_budget_exits_2_before_any_call(files, openai_fake):
    result = CliRunner().invoke(app, ["run", str(files["pipeline"]), "--input", PROMPT, "--budget", "-0.5"])
    assert result.exit_code == 2
    assert "--budget" in result.stderr
    assert openai_fake.requests == []


def test_budget_with_the_ray_executor_exits_2_the_ledger_lives_in_this_process(files, openai_fake):
    result = CliRunner().invoke(app, ["run", str(files["pipeline"]), "--inputs", str(files["inputs"]),
                                      "--executor", "ray", "--budget", "1"])
    assert result.exit_code == 2
    assert "--budget needs the runs in this process" in result.stderr
    assert openai_fake.requests == []


def test_records_carry_the_budget_and_the_report_shows_it(files, tmp_path):
    out, page = tmp_path / "out.jsonl", tmp_path / "report.html"
    result = CliRunner().invoke(app, ["run", str(files["pipeline"]), "--inputs", str(files["inputs"]),
                                      "--concurrency", "1", "--budget", "5", "--output", str(out),
                                      "--report", str(page)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    last = records[-1]["budget"]
    spent = sum(D(r["cost_usd"]) for r in records)
    assert (D(last["limit"]), D(last["spent"])) == (D(5), spent) and spent > 0
    assert D(last["spent"]) + D(last["remaining"]) == D(5)
    html = page.read_text()
    assert 'id="budget"' in html and last["spent"] in html
