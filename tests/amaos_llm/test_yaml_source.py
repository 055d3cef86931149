"""load_yaml: every file it reads refuses a key written twice, and lines survive anchors and aliases."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from amaos_llm import ConfigError, LLMConfig
from amaos_llm.yaml_source import load_yaml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        LLMConfig.from_yaml(path)
    return info.value


# --- a key written twice --------------------------------------------------------------------------
def test_a_key_written_twice_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, """
        models:
          - name: first
            provider: callable
            priority: 1
            name: second
        """)
    assert str(error_of(path)) == f"{path}:5: models[0].name: duplicate key 'name' (first at line 2)"


def test_a_top_level_key_written_twice_is_refused_whatever_the_file(tmp_path: Path) -> None:
    path = tmp_path / "any.yaml"
    path.write_text("name: a\nnodes: []\nname: b\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value) == f"{path}:3: name: duplicate key 'name' (first at line 1)"


def test_a_quoted_and_a_plain_key_are_the_same_key(tmp_path: Path) -> None:
    path = write(tmp_path, "models: []\n\"models\": []\n")
    assert (error_of(path).line, error_of(path).reason) == (2, "duplicate key 'models' (first at line 1)")


def test_a_key_from_a_merge_may_be_written_again(tmp_path: Path) -> None:
    path = write(tmp_path, """
        base: &base {provider: callable, priority: 1}
        models:
          - name: m
            <<: *base
            priority: 5
        """)
    doc = load_yaml(path)
    assert doc.data["models"][0] == {"name": "m", "provider": "callable", "priority": 5}


def test_an_anchor_used_twice_is_not_a_duplicate(tmp_path: Path) -> None:
    path = write(tmp_path, """
        base: &base {provider: callable}
        models:
          - {name: a, <<: *base}
          - {name: b, <<: *base}
        """)
    assert [m["name"] for m in load_yaml(path).data["models"]] == ["a", "b"]


# --- lines through anchors and aliases ------------------------------------------------------------
def test_an_error_through_an_alias_points_at_the_key_using_it(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults:
          max_retries: &zero 0
        models:
          - name: m
            provider: callable
            max_tokens: *zero
        """)
    err = error_of(path)
    assert (err.line, err.field) == (6, "models[0].max_tokens")


def test_an_error_through_a_merge_key_points_at_the_merge_in_the_entry(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults: &defaults
          timeout: 5
          deadline: 1
        models:
          - name: m
            provider: callable
            <<: *defaults
        """)
    err = error_of(path)
    assert (err.line, err.field) == (7, "models[0].deadline")


def test_an_error_through_a_list_of_merges_points_at_the_alias_that_brought_it(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults: &defaults {timeout: 5, deadline: 1}
        models:
          - &a {name: a, provider: callable}
          - name: b
            <<:
              - *a
              - *defaults
        """)
    err = error_of(path)
    assert (err.line, err.field) == (7, "models[1].deadline")


def test_a_merged_entry_repeating_a_name_points_at_the_merge(tmp_path: Path) -> None:
    path = write(tmp_path, """
        models:
          - &shared
            name: shared
            provider: callable
          - <<: *shared
            priority: 2
        """)
    err = error_of(path)
    assert (err.line, err.field, err.reason) == (5, "models[1].name", "duplicate model name 'shared'")


def test_an_error_inside_an_aliased_mapping_points_at_the_key_using_it(tmp_path: Path) -> None:
    path = write(tmp_path, """
        models:
          - name: m
            provider: callable
            options: &opts {timeout: 0}
        defaults: *opts
        """)
    err = error_of(path)
    assert (err.line, err.field) == (5, "defaults.timeout")


def test_a_key_written_in_the_entry_wins_over_the_merged_one_for_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
        models:
          - &a {name: a, provider: callable, timeout: 1}
          - name: b
            <<: *a
            timeout: 0
        """)
    err = error_of(path)
    assert (err.line, err.field) == (5, "models[1].timeout")


def test_an_error_at_the_anchor_itself_keeps_the_anchor_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
        models:
          - &m {name: m, provider: callable, timeout: 0}
          - {<<: *m, name: n}
        """)
    err = error_of(path)
    assert (err.line, err.field) == (2, "models[0].timeout")
