"""Batch runs from files: JSONL inputs in, one JSON record per run out.

An input line is a JSON string (the prompt) or an object with an `input` field (a prompt string
or a list of chat messages) and optionally `system_prompt`, `temperature`, `max_tokens`,
`force_model`, `metadata`; any other key is kept as metadata and echoed in the output record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from amaos_llm import ConfigError
from graphs.results import RunResult
from nodes import Payload, ResultMessage
from nodes.messages import OVERRIDE_FIELDS

_PAYLOAD_KEYS = frozenset({"input", "prompt", "messages", *OVERRIDE_FIELDS})


@dataclass(frozen=True, slots=True)
class BatchItem:
    line: int
    payload: Payload
    metadata: dict[str, Any]


def read_inputs(path: str | Path) -> list[BatchItem]:
    """Parse a JSONL file of inputs; a bad line is a `ConfigError` naming the file and line."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    return list(_items(text, path))


def _items(text: str, path: str) -> Iterator[BatchItem]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=number) from None
        yield parse_item(value, path, number)


def parse_item(value: Any, path: str = "<input>", line: int = 0) -> BatchItem:
    if isinstance(value, str):
        return BatchItem(line, Payload(prompt=value), {})
    if not isinstance(value, dict) or not ({"input", "prompt", "messages"} & value.keys()):
        raise ConfigError("each line must be a JSON string or an object with an `input` field", path=path, line=line)
    fields = {k: v for k, v in value.items() if k in _PAYLOAD_KEYS}
    metadata = {k: v for k, v in value.items() if k not in _PAYLOAD_KEYS and k != "metadata"}
    if isinstance(value.get("metadata"), dict):
        metadata.update(value["metadata"])
    try:
        payload = Payload.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ConfigError(first["msg"], path=path, line=line, field=field) from None
    return BatchItem(line, payload, metadata)


def llm_calls(run: RunResult) -> dict[str, ResultMessage]:
    """The results of the nodes that called a model (or tried to), by node id."""
    return {node_id: r for node_id, r in run.results.items() if r.model_name is not None or r.attempts}


def run_record(run: RunResult, payload: Payload, index: int | None = None) -> dict[str, Any]:
    """The JSON-ready record a batch writes for one run."""
    record: dict[str, Any] = {}
    if index is not None:
        record["index"] = index
    record["input"] = payload.text
    outputs = {node_id: r.content for node_id, r in run.outputs.items()}
    if len(outputs) == 1:
        record["output"] = next(iter(outputs.values()))
    record["outputs"] = outputs
    record["ok"] = run.ok
    record["errors"] = dict(run.errors)
    record["cost"] = float(run.total_cost)
    record["tokens"] = run.total_tokens
    record["wall_time"] = round(run.wall_time, 6)
    record["llm"] = {
        node_id: {
            "model": r.model_name,
            "provider": r.provider,
            "input_tokens": r.usage.input_tokens,
            "output_tokens": r.usage.output_tokens,
            "cost": None if r.cost is None else float(r.cost),
            "latency": round(r.latency, 6),
        }
        for node_id, r in llm_calls(run).items()
    }
    if run.metadata:
        record["metadata"] = run.metadata
    return record
