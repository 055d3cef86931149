"""`amaos-llm validate` beyond the schema (graphs.config_check), and `amaos-llm --version`."""

import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphs.cli import app

KEY = "sk-inline-SECRET-42"


@pytest.fixture
def runner():
    return CliRunner()


def write(tmp_path: Path, text: str, name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def validate(runner: CliRunner, path: Path, **kwargs):
    return runner.invoke(app, ["validate", str(path)], **kwargs)


# --- nothing to route to ---------------------------------------------------------------------------
def test_an_empty_file_has_nothing_to_route_to(runner, tmp_path):
    path = write(tmp_path, "")
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: models: no models: `complete` would have nothing to route to"
    ]


def test_an_empty_models_list_has_nothing_to_route_to(runner, tmp_path):
    path = write(tmp_path, "routing: {prefer_local: true}\nmodels: []\n")
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:2: models: no models: `complete` would have nothing to route to"
    ]


def test_only_disabled_models_is_nothing_to_route_to(runner, tmp_path):
    path = write(tmp_path, """
        models:
          - {name: a, provider: callable, enabled: false}
        """)
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:2: models: every model has `enabled: false`: `complete` would have nothing to route to"
    ]


def test_a_pipeline_whose_model_config_is_empty_has_nothing_to_route_to(runner, tmp_path):
    models = write(tmp_path, "models: []\n")
    path = write(tmp_path, """
        name: x
        nodes:
          - {id: llm, type: llm_manager, config: {config_path: models.yaml}}
        """, name="p.yaml")
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {models}:1: models: no models: `complete` would have nothing to route to"
    ]


# --- an API key written in the file ----------------------------------------------------------------
def test_an_inline_api_key_is_valid_with_a_warning_naming_the_line_not_the_key(runner, tmp_path):
    path = write(tmp_path, f"""
        models:
          - name: gpt
            provider: openai
            api_key: {KEY}
        """)
    result = validate(runner, path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: model configuration: 1 models\n"
    assert result.stderr.splitlines() == [
        f"warning: {path}:4: models[0].api_key: an API key written in the file; keep keys in the environment "
        "and name the variable with `api_key_env:`"
    ]
    assert KEY not in result.output


def test_an_inline_api_key_in_a_pipelines_model_config_is_warned_about_once(runner, tmp_path):
    models = write(tmp_path, f"models:\n  - {{name: gpt, provider: openai, api_key: {KEY}}}\n")
    path = write(tmp_path, """
        name: x
        nodes:
          - {id: a, type: llm_manager, config: {config_path: models.yaml}}
          - {id: b, type: llm_manager, config: {config_path: models.yaml}}
        """, name="p.yaml")
    result = validate(runner, path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: pipeline 'x': 2 nodes, 0 edges\n"
    assert [line.split(": ")[1] for line in result.stderr.splitlines()] == [f"{models}:2"]
    assert KEY not in result.output


# --- a key written twice ---------------------------------------------------------------------------
def test_a_key_written_twice_is_an_error_naming_both_lines(runner, tmp_path):
    path = write(tmp_path, """
        models:
          - name: a
            provider: callable
          - name: b
            provider: callable
            name: c
        """)
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {path}:6: models[1].name: duplicate key 'name' (first at line 4)"]


def test_a_key_written_twice_in_a_pipeline_is_an_error(runner, tmp_path):
    path = write(tmp_path, """
        name: x
        nodes:
          - id: p
            type: prompt_template
            config: {template: "a {input}", template: "b {input}"}
        """, name="p.yaml")
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:5: nodes[0].config.template: duplicate key 'template' (first at line 5)"
    ]


# --- force_model --------------------------------------------------------------------------------------
def test_force_model_must_name_a_model_of_the_nodes_config(runner, tmp_path):
    models = write(tmp_path, "models:\n  - {name: a, provider: callable}\n  - {name: b, provider: callable}\n")
    path = write(tmp_path, """
        name: x
        nodes:
          - id: llm
            type: llm_manager
            config:
              config_path: models.yaml
              force_model: ghost
        """, name="p.yaml")
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:7: nodes[0].config.force_model: unknown model 'ghost'; known models in {models}: a, b"
    ]


def test_force_model_without_config_path_is_checked_against_the_default_config(runner, tmp_path):
    models = write(tmp_path, "models:\n  - {name: only, provider: callable}\n")
    path = write(tmp_path, """
        name: x
        nodes:
          - {id: llm, type: llm_manager, config: {force_model: ghost}}
        """, name="p.yaml")
    result = validate(runner, path, env={"AMAOS_LLM_CONFIG": str(models)})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:3: nodes[0].config.force_model: unknown model 'ghost'; known models in {models}: only"
    ]


def test_force_model_naming_a_known_model_is_ok(runner, tmp_path):
    write(tmp_path, "models:\n  - {name: a, provider: callable}\n")
    path = write(tmp_path, """
        name: x
        nodes:
          - {id: llm, type: llm_manager, config: {config_path: models.yaml, force_model: a}}
        """, name="p.yaml")
    result = validate(runner, path)
    assert (result.exit_code, result.stdout) == (0, "ok: pipeline 'x': 1 nodes, 0 edges\n")


# --- embedded model files -----------------------------------------------------------------------------
def test_an_embedded_model_whose_file_is_missing_is_an_error_naming_the_path(runner, tmp_path):
    path = write(tmp_path, """
        models:
          - name: smol
            provider: embedded
            model_path: weights/smol.gguf
        """)
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:4: models[0].model_path: model file not found: {tmp_path / 'weights' / 'smol.gguf'}"
    ]


def test_an_embedded_model_whose_file_exists_is_ok(runner, tmp_path):
    (tmp_path / "smol.gguf").write_bytes(b"GGUF")
    path = write(tmp_path, "models:\n  - {name: smol, provider: embedded, model_path: smol.gguf}\n")
    result = validate(runner, path)
    assert (result.exit_code, result.stdout) == (0, "ok: model configuration: 1 models\n")


def test_a_disabled_embedded_model_may_lack_its_file(runner, tmp_path):
    path = write(tmp_path, """
        models:
          - {name: smol, provider: embedded, model_path: absent.gguf, enabled: false}
          - {name: fn, provider: callable}
        """)
    result = validate(runner, path)
    assert (result.exit_code, result.stdout) == (0, "ok: model configuration: 2 models\n")


# --- local_only ---------------------------------------------------------------------------------------
def test_a_pipeline_node_follows_its_config_files_local_only(runner, tmp_path):
    models = write(tmp_path, "routing: {local_only: true}\nmodels:\n  - {name: gpt, provider: openai}\n")
    path = write(tmp_path, """
        name: x
        nodes:
          - {id: llm, type: llm_manager, config: {config_path: models.yaml}}
        """, name="p.yaml")
    result = validate(runner, path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {models}: local_only, but no enabled model has `source: local`"]


# --- --version ----------------------------------------------------------------------------------------
def test_version_prints_the_installed_package_version(runner):
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"amaos-llm {version('amaos-llm')}\n")
