"""What `amaos-llm validate` checks beyond the schema: files that load but could never answer.

The library stays permissive where code may fill the gaps later (an empty `models:` list before
`register_model`, a model file still to be downloaded); a file handed to `validate` is meant to
run as it is, so there those are errors. An API key written in the file is only a warning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from amaos_llm import ConfigError, LLMConfig
from amaos_llm.config import CONFIG_ENV, PACKAGED_CONFIG
from amaos_llm.yaml_source import YamlDocument, load_yaml
from nodes import LLMManagerNode

if TYPE_CHECKING:
    from graphs.pipeline import Pipeline


@dataclass
class ModelConfigCheck:
    """A model configuration that passed: where it was read, what it holds, what to warn about."""

    path: str
    config: LLMConfig
    warnings: list[str] = field(default_factory=list)


def check_model_config(path: str | Path | None) -> ModelConfigCheck:
    """Load the model configuration at `path` (None: the one `LLMConfig.default()` reads) and check it.

    Raises `ConfigError` for the first problem: the schema's, nothing to route to, or a missing
    embedded model file. An API key written in the file comes back as a warning."""
    config = LLMConfig.from_yaml(path) if path is not None else LLMConfig.default()
    shown = str(path) if path is not None else os.environ.get(CONFIG_ENV) or str(PACKAGED_CONFIG)
    doc = load_yaml(shown)
    if not any(m.enabled for m in config.models):
        why = "every model has `enabled: false`" if config.models else "no models"
        raise doc.error(("models",), f"{why}: `complete` would have nothing to route to")
    for i, spec in enumerate(config.models):
        # A disabled model may lack its file on purpose; an enabled one would fail on its first call.
        if spec.enabled and spec.provider == "embedded" and spec.model_path is not None:
            if not Path(spec.model_path).expanduser().is_file():
                raise doc.error(("models", i, "model_path"), f"model file not found: {spec.model_path}")
    warnings = [
        str(doc.error(("models", i, "api_key"), "an API key written in the file; keep keys in the environment "
                                                "and name the variable with `api_key_env:`"))
        for i, spec in enumerate(config.models)
        if spec.api_key is not None  # the place only, never the value
    ]
    return ModelConfigCheck(shown, config, warnings)


def require_local(check: ModelConfigCheck) -> None:
    """For a local_only run: some enabled model must be local."""
    if not any(m.enabled and m.is_local for m in check.config.models):
        raise ConfigError("local_only, but no enabled model has `source: local`", path=check.path)


def check_pipeline_models(doc: YamlDocument, pipeline: Pipeline, *, local_only: bool = False) -> list[str]:
    """Check the model configuration of each `llm_manager` node of the pipeline read from `doc`,
    and that its `force_model` names one of that configuration's models. Returns the warnings."""
    checked: dict[str | None, ModelConfigCheck] = {}  # one check, and one set of warnings, per file
    for i, entry in enumerate(doc.data["nodes"]):
        node = pipeline.orchestrator.nodes[entry["id"]]
        if not isinstance(node, LLMManagerNode):
            continue
        c = node.config
        # A node naming a shared manager is configured by that `managers:` entry.
        source = pipeline.manager_specs[c.manager] if c.manager is not None else c
        if source.config_path not in checked:
            checked[source.config_path] = check_model_config(source.config_path)
        check = checked[source.config_path]
        # The node's local_only, else the file's, as the node's manager will decide.
        wanted = source.local_only
        if local_only or (wanted if wanted is not None else check.config.routing.local_only):
            require_local(check)
        names = [m.name for m in check.config.models]
        if c.force_model is not None and c.force_model not in names:
            raise doc.error(
                ("nodes", i, "config", "force_model"),
                f"unknown model {c.force_model!r}; known models in {check.path}: {', '.join(names)}",
            )
    return [w for check in checked.values() for w in check.warnings]
