"""The offline guarantee end to end: the shipped offline pipeline, run under a socket guard that
fails any connection or name lookup leaving loopback, answers from the embedded model — with
cloud keys set, so only local_only keeps the cloud models away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graphs import load_pipeline
from graphs.cli import app

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "config" / "pipelines" / "offline_agent.yaml"


@pytest.fixture
def cloud_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "DASHSCOPE_API_KEY"):
        monkeypatch.setenv(var, "sk-present-but-must-not-be-used")


@pytest.mark.anyio
async def test_offline_pipeline_answers_with_no_egress(no_egress: list[Any], cloud_keys: None) -> None:
    async with load_pipeline(PIPELINE) as pipeline:
        run = await pipeline.run("What is 2 + 2?")
    answer = run.outputs["answer"]
    llm = run.results["llm"]
    assert run.errors == {} and answer.content.strip() != ""
    assert (llm.model_name, llm.provider, llm.cost) == ("smollm2-embedded", "embedded", 0)
    assert llm.usage.input_tokens > 0 and llm.usage.output_tokens > 0
    assert run.total_tokens == llm.usage.total_tokens
    assert no_egress == []


def test_cli_run_with_local_only_stays_on_loopback(no_egress: list[Any], cloud_keys: None) -> None:
    summarize = REPO / "config" / "pipelines" / "summarize.yaml"
    result = CliRunner().invoke(app, ["run", str(summarize), "--local-only", "--input", "The sky is blue."])
    assert result.exit_code == 0, result.output
    assert "smollm2-embedded" in result.output
    assert no_egress == []
