"""`validate_configuration()` and `amaos-llm validate --live` on a configuration mixing a good, a
keyless, an unreachable and an unpriced model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from amaos_llm import LLMConfig, LLMManager
from graphs.cli import app
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio
KEY = "sk-report-1234567890"


def models(good_url: str, closed: str) -> list[dict[str, Any]]:
    return [
        {"name": "good", "provider": "openai", "model": "test-model", "base_url": good_url,
         "api_key_env": "AMAOS_REPORT_KEY", "cost_per_1k_input": 1, "cost_per_1k_output": 2, "context_window": 8000},
        {"name": "keyless", "provider": "openai", "base_url": good_url, "api_key_env": "AMAOS_REPORT_UNSET"},
        {"name": "down", "provider": "openai", "model": "gpt-4o-mini", "base_url": closed + "/v1",
         "api_key_env": "AMAOS_REPORT_KEY"},
        {"name": "unpriced", "provider": "openai_compatible", "model": "test-model", "base_url": good_url,
         "source": "cloud"},
        {"name": "local", "provider": "ollama", "model": "m", "base_url": closed, "options": {"num_ctx": 4096},
         "enabled": False},
    ]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_REPORT_KEY", KEY)
    monkeypatch.delenv("AMAOS_REPORT_UNSET", raising=False)


async def test_the_report_names_each_models_problem(env: None, closed_port: str) -> None:
    with OpenAIFake() as fake:
        async with LLMManager(LLMConfig.model_validate({"models": models(fake.url, closed_port)})) as m:
            report = await m.validate_configuration()
        generations = [r for r in fake.requests if r.method == "POST"]
    assert report.ok is False and generations == []
    checks = report.models
    assert checks["good"].problems == [] and checks["good"].reachable is True
    assert (checks["good"].price_source, checks["good"].context_window) == ("yaml", 8000)
    assert checks["keyless"].credentials is False and "AMAOS_REPORT_UNSET" in checks["keyless"].problems[0]
    assert checks["down"].reachable is False and checks["down"].price_source == "genai-prices"
    assert checks["down"].context_window and checks["down"].context_window > 100_000
    unpriced = checks["unpriced"]
    assert unpriced.price_source == "unknown" and any("price unknown" in p for p in unpriced.problems)
    assert checks["local"].problems == [] and checks["local"].context_window == 4096  # disabled: reported, not judged
    assert KEY not in report.model_dump_json()


def test_validate_live_prints_the_table_and_exits_1(env: None, closed_port: str, tmp_path: Path) -> None:
    with OpenAIFake() as fake:
        path = tmp_path / "models.yaml"
        path.write_text(yaml.safe_dump({"models": models(fake.url, closed_port)}))
        result = CliRunner().invoke(app, ["validate", str(path), "--live"])
        ok_path = tmp_path / "ok.yaml"
        ok_path.write_text(yaml.safe_dump({"models": models(fake.url, closed_port)[:1]}))
        ok = CliRunner().invoke(app, ["validate", str(ok_path), "--live"])
    assert result.exit_code == 1, result.output
    assert "keyless" in result.output and "missing" in result.output and KEY not in result.output
    assert ok.exit_code == 0, ok.output
