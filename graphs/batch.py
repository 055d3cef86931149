"""Batch runs from files: JSONL inputs in, one JSON record per run out.

An input line is a JSON string (the prompt) or an object with an `input` field (a prompt string
or a list of chat messages) and optionally `id`, `system_prompt`, `temperature`, `max_tokens`,
`force_model`, `metadata`; any other key is kept as metadata and echoed in the output record.
Blank lines are not inputs.

Files are read lazily, a line at a time, so a file of any length costs the memory of one line. Every
input has an id, its `id` field, else its line number; its record carries it as `id`, and that is what
`--resume` looks for in the records already written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from amaos_llm import ConfigError
from amaos_llm.types import Attempt
from graphs.results import RunResult
from graphs.topology import Edge
from nodes import Node, Payload, ResultMessage
from nodes.messages import OVERRIDE_FIELDS

_PAYLOAD_KEYS = frozenset({"input", "prompt", "messages", *OVERRIDE_FIELDS})

# Ids below this are kept as bits (a line number costs one); larger ones, and any other JSON value,
# as their JSON text. 2**27 bits is 16 MB, reached only by a file of 134 million lines.
_BITMAP_LIMIT = 1 << 27


class InputIds:
    """A set of input ids, as `--resume` and `validate --inputs` need one for a whole file. Most ids
    are line numbers, so small ints take a bit each: a million-line file costs 125 kB, not a set of
    a million ints. Other ids are compared as JSON text, so that 7 and "7" stay apart and lists are
    hashable."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self._texts: set[str] = set()
        self.count = 0  # ids added (an id added twice counts twice)

    def add(self, input_id: Any) -> None:
        if _is_small_int(input_id):
            byte, bit = divmod(input_id, 8)
            if byte >= len(self._bits):
                self._bits.extend(bytes(byte + 1 - len(self._bits) + len(self._bits) // 2))
            self._bits[byte] |= 1 << bit
        else:
            self._texts.add(json.dumps(input_id, sort_keys=True))
        self.count += 1

    def __contains__(self, input_id: Any) -> bool:
        if _is_small_int(input_id):
            byte, bit = divmod(input_id, 8)
            return byte < len(self._bits) and bool(self._bits[byte] >> bit & 1)
        return json.dumps(input_id, sort_keys=True) in self._texts


def _is_small_int(value: Any) -> bool:
    return type(value) is int and 0 <= value < _BITMAP_LIMIT  # not a bool: `true` is not the id 1


@dataclass(frozen=True, slots=True)
class BatchItem:
    line: int  # 1-based line number in the file
    payload: Payload
    metadata: dict[str, Any]
    index: int = 0  # 0-based position among the file's inputs (blank lines are not inputs)
    id: Any = None  # the line's `id` field, if any

    @property
    def record_id(self) -> Any:
        """The input's id, written as its record's `id`: its `id` field, else its line number."""
        return self.line if self.id is None else self.id


@dataclass(frozen=True, slots=True)
class BadInput:
    """A line that is not a valid input; `error` names the file and line."""

    line: int
    error: ConfigError
    index: int = 0
    id: Any = None  # when the line is a JSON object with an `id`

    @property
    def record_id(self) -> Any:
        return self.line if self.id is None else self.id


def read_inputs(path: str | Path) -> Iterator[BatchItem]:
    """The inputs of a JSONL file, read lazily; a bad line raises its `ConfigError` (naming the
    file and line) when the reading reaches it, after every input before it."""
    for entry in read_lines(path):
        if isinstance(entry, BadInput):
            raise entry.error
        yield entry


def read_lines(path: str | Path) -> Iterator[BatchItem | BadInput]:
    """Every input line of a JSONL file, read lazily: a `BatchItem`, or a `BadInput` for a line
    that is not one, so that a reader can go on past it. A file that cannot be read raises."""
    path = str(path)
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by the `with` below, when the reading ends
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    with file:
        index = 0
        # Bytes, decoded line by line: a stray byte that is not UTF-8 is one bad line, not a dead file.
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            yield parse_line(raw, path, number, index)
            index += 1


@dataclass
class InputsCheck:
    """What `check_inputs` found in a whole file: the first `limit` problems of each kind, and counts."""

    path: str
    inputs: int = 0  # valid input lines
    bad: list[ConfigError] = field(default_factory=list)
    bad_count: int = 0
    duplicates: list[str] = field(default_factory=list)  # warnings: an `id` given twice
    duplicate_count: int = 0


def check_inputs(path: str | Path, limit: int = 20) -> InputsCheck:
    """Read a whole JSONL file of inputs and report every bad line, and every id two lines share
    (`--resume` would take the second for the first, already answered): an `id` given twice, or an
    `id` equal to the number of a line that has none."""
    check = InputsCheck(str(path))
    first_line: dict[str, int] = {}  # an `id` field (as JSON text) -> the line it first appeared on
    unnamed = InputIds()  # the lines without an `id` field: their ids are their numbers

    def twice(line: int, why: str) -> None:
        check.duplicate_count += 1
        if len(check.duplicates) < limit:
            check.duplicates.append(f"{path}:{line}: {why}; --resume would skip one of them")

    for entry in read_lines(path):
        if isinstance(entry, BadInput):
            check.bad_count += 1
            if len(check.bad) < limit:
                check.bad.append(entry.error)
        else:
            check.inputs += 1
        if entry.id is None:
            unnamed.add(entry.line)
            named = first_line.get(str(entry.line))
            if named is not None:
                twice(entry.line, f"a line without an id is known by its number, {entry.line}, which is also "
                                  f"the id of line {named}")
            continue
        text = json.dumps(entry.id, sort_keys=True)
        if entry.id in unnamed:
            twice(entry.line, f"id {text} is also the id of line {entry.id}, which has none (a line without an "
                              "id is known by its number)")
            continue
        first = first_line.setdefault(text, entry.line)
        if first != entry.line:
            twice(entry.line, f"id {text} is also the id of line {first}")
    return check


def count_inputs(path: str | Path) -> int | None:
    """How many input lines a file has (a quick pass over bytes, about 0.1 s per million lines),
    or None when it is not a regular file (a pipe can be read only once)."""
    p = Path(path)
    if not p.is_file():
        return None
    with p.open("rb") as file:
        return sum(1 for raw in file if raw.strip())


def parse_line(raw: bytes, path: str, line: int, index: int = 0) -> BatchItem | BadInput:
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        return BadInput(line, ConfigError(f"not UTF-8 text (byte {exc.start + 1})", path=path, line=line), index)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        error = ConfigError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, line=line)
        return BadInput(line, error, index)
    try:
        return parse_item(value, path, line, index)
    except ConfigError as exc:
        return BadInput(line, exc, index, value.get("id") if isinstance(value, dict) else None)


def parse_item(value: Any, path: str = "<input>", line: int = 0, index: int = 0) -> BatchItem:
    if isinstance(value, str):
        return BatchItem(line, Payload(prompt=value), {}, index)
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
    return BatchItem(line, payload, metadata, index, value.get("id"))


def llm_calls(run: RunResult) -> dict[str, ResultMessage]:
    """The results of the nodes that called a model (or tried to), by node id."""
    return {node_id: r for node_id, r in run.results.items() if r.model_name is not None or r.attempts}


def run_record(
    run: RunResult, payload: Payload, index: int | None = None, item: BatchItem | None = None
) -> dict[str, Any]:
    """The JSON-ready record a batch writes for one run (with `item`, where its input came from).

    Floats (`cost`, `llm.*.cost`) are for reading by eye and by older tools; the `*_usd` fields are
    the exact Decimals as strings, which `amaos-llm report` sums so its totals equal the RunResults'."""
    record: dict[str, Any] = _where(item, index)
    record["input"] = payload.text
    outputs = {node_id: r.content for node_id, r in run.outputs.items()}
    if len(outputs) == 1:
        record["output"] = next(iter(outputs.values()))
    record["outputs"] = outputs
    record["ok"] = run.ok
    record["errors"] = dict(run.errors)
    upstream_failed = [n for n, r in run.results.items() if r.error is not None and n not in run.errors]
    if upstream_failed:  # these did not run: an input failed (their results say which)
        record["upstream_failed"] = upstream_failed
    record["cost"] = float(run.total_cost)
    record["cost_usd"] = exact(run.total_cost)
    record["cost_by_node"] = {node_id: exact(cost) for node_id, cost in run.cost_by_node.items()}
    if run.unpriced:
        record["unpriced"] = list(run.unpriced)
    record["tokens"] = run.total_tokens
    record["wall_time"] = round(run.wall_time, 6)
    record["finished_at"] = round(time.time(), 3)  # the report's cost-over-time axis
    record["llm"] = {node_id: _llm_entry(r) for node_id, r in llm_calls(run).items()}
    if run.budget_usd is not None:  # the run's cap, as it stood when the run ended (the report shows the last)
        remaining = run.budget_remaining if run.budget_remaining is not None else run.budget_usd
        record["budget"] = {"limit": exact(run.budget_usd), "spent": exact(run.budget_usd - remaining),
                            "remaining": exact(remaining)}
    if run.downgraded:
        record["downgraded"] = list(run.downgraded)
    if run.metadata:
        record["metadata"] = run.metadata
    return record


def _llm_entry(r: ResultMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": r.model_name,
        "provider": r.provider,
        "input_tokens": r.usage.input_tokens,
        "output_tokens": r.usage.output_tokens,
        "cost": None if r.cost is None else float(r.cost),
        "cost_usd": None if r.cost is None else exact(r.cost),
        "latency": round(r.latency, 6),
    }
    if r.attempts:
        entry["attempts"] = [_attempt_entry(a) for a in r.attempts]
    return entry


def _attempt_entry(a: Attempt) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": a.model_name, "provider": a.provider, "outcome": a.outcome}
    if a.error is not None:
        entry["error"] = a.error
    if a.outcome != "skipped":
        entry["latency"] = round(a.latency, 6)
    if a.usage is not None:
        entry["input_tokens"], entry["output_tokens"] = a.usage.input_tokens, a.usage.output_tokens
    if a.cost is not None:
        entry["cost_usd"] = exact(a.cost)
    return entry


def exact(cost: Decimal) -> str:
    """A Decimal as plain digits (never `1E-7`), exactly: `Decimal(exact(d)) == d`."""
    return format(cost, "f")


def pipeline_record(name: str, nodes: Iterable[Node], edges: Iterable[Edge]) -> dict[str, Any]:
    """The pipeline's shape, carried by the first record of an output file (under `pipeline`) so
    that `amaos-llm report` can draw the graph from the file alone."""
    return {
        "name": name,
        "nodes": [{"id": n.id, "type": n.type_name or type(n).__name__} for n in nodes],
        "edges": [{"from": e.src, "to": e.dst, **({"label": e.label} if e.label else {})} for e in edges],
    }


def bad_input_record(bad: BadInput) -> dict[str, Any]:
    """The record written in place of a run for a line that is not a valid input (`--on-bad-input
    skip`): the same keys as a run's, `ok` false, the error under `errors["input"]`."""
    record = _where(bad, bad.index)
    record.update({"input": None, "outputs": {}, "ok": False, "errors": {"input": str(bad.error)},
                   "cost": 0.0, "tokens": 0, "wall_time": 0.0, "llm": {}})
    return record


def record_id(record: Any) -> Any:
    """The id of the input a written record answers (see `BatchItem.record_id`); None if it names none.
    Records written before every record carried an `id` name an input without one by its `line`:
    the same id, so their outputs resume as they are."""
    if not isinstance(record, dict):
        return None
    if record.get("id") is not None:
        return record["id"]
    line = record.get("line")
    return line if type(line) is int else None


def _where(entry: BatchItem | BadInput | None, index: int | None) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if index is not None:
        record["index"] = index
    if entry is not None:
        record["line"] = entry.line
        record["id"] = entry.record_id
    return record
