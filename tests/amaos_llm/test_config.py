"""model_priority.yaml: schema, defaults, and errors that name file, line and field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from amaos_llm import ConfigError, LLMConfig, LLMManager, ModelSpec
from amaos_llm.config import PACKAGED_CONFIG

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_shipped_config_is_the_packaged_default_and_loads() -> None:
    shipped = REPO / "config" / "model_priority.yaml"
    assert shipped.read_bytes() == PACKAGED_CONFIG.read_bytes()
    config = LLMConfig.from_yaml(shipped)
    assert [m.name for m in config.models][:2] == ["llama3-local", "smollm2-embedded"]
    assert {m.provider for m in config.models} >= {"ollama", "embedded", "openai", "anthropic", "google"}


def test_no_argument_manager_reads_the_env_named_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_LLM_CONFIG", str(write(tmp_path, "models:\n  - {name: x, provider: callable}\n")))
    assert [m.name for m in LLMManager().list_models()] == ["x"]


def test_an_unreadable_env_named_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_LLM_CONFIG", "/nope.yaml")
    with pytest.raises(ConfigError) as info:
        LLMConfig.default()
    assert str(info.value) == "$AMAOS_LLM_CONFIG=/nope.yaml: cannot read file: No such file or directory"


def test_a_bad_line_in_the_env_named_file_names_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "models:\n  - {name: x, provider: nope}\n")
    monkeypatch.setenv("AMAOS_LLM_CONFIG", str(path))
    with pytest.raises(ConfigError) as info:
        LLMConfig.default()
    assert str(info.value).startswith(f"{path}:2: models[0].provider: unknown provider 'nope'")


def test_no_argument_manager_falls_back_to_the_packaged_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMAOS_LLM_CONFIG", raising=False)
    assert LLMManager(local_only=True).list_models() == LLMConfig.from_yaml(PACKAGED_CONFIG).models


def test_defaults_fill_model_id_source_and_key_variable() -> None:
    specs = {
        s.name: s
        for s in [
            ModelSpec(name="o", provider="ollama"),
            ModelSpec(name="gpt", provider="openai"),
            ModelSpec(name="near", provider="openai_compatible", base_url="http://localhost:8000/v1"),
            ModelSpec(name="v6", provider="openai_compatible", base_url="http://[::1]:8000/v1"),
            ModelSpec(name="far", provider="openai_compatible", base_url="https://dashscope.example.com/v1"),
        ]
    }
    assert (specs["o"].model, specs["o"].source) == ("o", "local")
    assert (specs["gpt"].source, specs["gpt"].api_key_env) == ("cloud", "OPENAI_API_KEY")
    assert [specs[n].source for n in ("near", "v6", "far")] == ["local", "local", "cloud"]


def test_prices_are_exact_decimals(tmp_path: Path) -> None:
    yaml_text = "models:\n  - {name: c, provider: anthropic, cost_per_1k_input: 0.25}\n"
    config = LLMConfig.from_yaml(write(tmp_path, yaml_text))
    assert config.models[0].cost_per_1k_input == Decimal("0.25")


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("models:\n  - {name: a, provider: callable}\n  - {name: a, provider: callable}\n",
         3, "models[1].name", "duplicate model name 'a'"),
        ("models:\n  - name: a\n    provider: nope\n",
         3, "models[0].provider", "unknown provider 'nope'; known providers: anthropic, azure_openai, bedrock"),
        ("models:\n  - name: a\n    provider: openai\n    cost_per_1k_input: -1\n",
         4, "models[0].cost_per_1k_input", "greater than or equal to 0"),
        ("models:\n  - name: a\n    provider: ollama\n    timeout: 0\n",
         4, "models[0].timeout", "greater than 0"),
        ("models:\n  - name: a\n    provider: ollama\n    priorty: 3\n",
         4, "models[0].priorty", "unknown key 'priorty'; allowed keys: name, provider, model"),
        ("routing:\n  stratgy: cost\nmodels: []\n",
         2, "routing.stratgy", "unknown key 'stratgy'; allowed keys: prefer_local, strategy"),
        ("models:\n  - provider: ollama\n", 2, "models[0].name", "required field is missing"),
        ("routing: {fallback_chain: [ghost]}\nmodels: []\n", 1, "routing.fallback_chain[0]", "unknown model 'ghost'"),
        ("models:\n  - name: a\n    provider: openai\n    base_url: []\n",
         4, "models[0].base_url", "an empty list"),
        ("models:\n  - name: a\n    provider: openai\n    api_key_env: [K1, K1]\n",
         4, "models[0].api_key_env", "duplicate entries"),
        ("routing: {retry_strategy: region_first}\nmodels: []\n", 1, "routing.retry_strategy", "model_first"),
        ("defaults: {load_timeout: -1}\nmodels: []\n", 1, "defaults.load_timeout", "greater than 0"),
    ],
)
def test_schema_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        LLMConfig.from_yaml(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert message in err.reason
    assert str(err).startswith(f"{path}:{line}: {field}: ")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    provider: [ollama\n")
    with pytest.raises(ConfigError) as info:
        LLMConfig.from_yaml(path)
    assert info.value.line == 4 and "invalid YAML" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        LLMConfig.from_yaml(tmp_path / "absent.yaml")


def test_relative_model_path_resolves_against_the_yaml_file(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - {name: e, provider: embedded, model_path: models/m.gguf}\n")
    assert LLMConfig.from_yaml(path).models[0].model_path == str(tmp_path / "models" / "m.gguf")
