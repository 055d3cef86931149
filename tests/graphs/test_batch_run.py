"""`amaos-llm run --inputs`: records streamed in input order, --resume, --on-bad-input, an output
that cannot be written, and `validate --inputs`."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from amaos_llm import ConfigError
from graphs.batch import InputIds, read_inputs, read_lines
from graphs.cli import app
from nodes import Node, register_node_type
from nodes.registry import _registered

CALLS: list[str] = []


class EchoNode(Node):
    """Upper-cases its input; an input holding `slow` takes 50 ms, so later ones finish first."""

    type_name = "echo_upper"

    async def handle(self, task):
        CALLS.append(task.content)
        if "slow" in task.content:
            await anyio.sleep(0.05)
        return task.reply(task.content.upper())


@pytest.fixture(autouse=True)
def echo_type():
    register_node_type(EchoNode)
    CALLS.clear()
    yield
    _registered.clear()


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text("name: echo\nnodes:\n  - {id: up, type: echo_upper}\n")
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["run", *args])


class Raw(str):
    """A line written as it is (a bad line), not as JSON."""


def jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, Raw) else json.dumps(x)) + "\n" for x in lines))
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_come_in_input_order_even_when_later_runs_finish_first(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", [{"input": "slow 0"}, *({"input": f"fast {i}"} for i in range(1, 12))])
    out = tmp_path / "out.jsonl"
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--concurrency", "4")
    assert result.exit_code == 0, result.output
    got = records(out)
    assert [(r["index"], r["line"], r["output"]) for r in got] == [(0, 1, "SLOW 0")] + [
        (i, i + 1, f"FAST {i}") for i in range(1, 12)
    ]
    assert CALLS.index("slow 0") == 0 and len(CALLS) == 12


def test_a_bad_line_stops_the_run_there_with_every_record_before_it_written(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", [{"input": f"x{i}", "id": i} for i in range(1, 6)] + [Raw('{"input": ')]
                   + [{"input": f"x{i}", "id": i} for i in range(7, 11)])
    out = tmp_path / "out.jsonl"
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--concurrency", "3")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: {inputs}:6: invalid JSON: Expecting value (column 11); the runs before it are in {out}: "
        "fix the line (or use --on-bad-input skip) and run again with --resume"
    )
    assert [r["id"] for r in records(out)] == [1, 2, 3, 4, 5]
    assert sorted(CALLS) == ["x1", "x2", "x3", "x4", "x5"]  # nothing after the bad line ran

    # ... and the command is resumable: with `skip`, the bad line becomes an error record.
    CALLS.clear()
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--resume", "--on-bad-input", "skip")
    assert result.exit_code == 1
    got = records(out)
    assert [r["line"] for r in got] == list(range(1, 11))
    assert got[5] == {"index": 5, "line": 6, "id": 6, "input": None, "outputs": {}, "ok": False,
                      "errors": {"input": f"{inputs}:6: invalid JSON: Expecting value (column 11)"},
                      "cost": 0.0, "tokens": 0, "wall_time": 0.0, "llm": {}}
    assert sorted(CALLS) == ["x10", "x7", "x8", "x9"]
    assert "4 runs, 0 failed, 1 bad input line, 5 already in" in result.stderr


def test_skip_writes_an_error_record_for_each_bad_line_and_goes_on(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a", {"text": "no input", "id": "t"}, "b", [1, 2], "c"])
    out = tmp_path / "out.jsonl"
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--on-bad-input", "skip")
    assert result.exit_code == 1
    got = records(out)
    assert [(r["line"], r["ok"], r.get("output")) for r in got] == [
        (1, True, "A"), (2, False, None), (3, True, "B"), (4, False, None), (5, True, "C")]
    need_input = "each line must be a JSON string or an object with an `input` field"
    assert (got[1]["id"], got[1]["errors"]) == ("t", {"input": f"{inputs}:2: {need_input}"})
    assert got[3]["errors"] == {"input": f"{inputs}:4: {need_input}"}
    assert "3 runs, 0 failed, 2 bad input lines, $0.000000" in result.stderr


def test_every_record_carries_its_inputs_id_field_else_its_line_number(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["one", {"input": "two", "id": "b"}, Raw(""), {"input": "four", "id": [4]},
                                           Raw("{"), {"input": "six"}])
    out = tmp_path / "out.jsonl"
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--on-bad-input", "skip")
    assert result.exit_code == 1  # the bad line
    assert [(r["line"], r["id"]) for r in records(out)] == [(1, 1), (2, "b"), (4, [4]), (5, 5), (6, 6)]


def test_resume_skips_the_inputs_whose_ids_are_already_answered(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["one", {"input": "two", "id": "b"}, {"input": "three", "id": "c"},
                                           {"input": "four", "id": 4}, "five", {"input": "six", "id": "6"}])
    out = tmp_path / "out.jsonl"
    # Answered before: ids 1 (line 1 has no id field), "b", 4 (line 4's `id` field) and 6, which is line
    # 6's number but not its id: that is "6", a string.
    jsonl(out, [{"index": 0, "line": 1, "id": 1, "ok": True}, {"line": 2, "id": "b", "ok": True},
                {"line": 4, "id": 4, "ok": True}, {"line": 6, "id": 6, "ok": True}])
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert sorted(CALLS) == ["five", "six", "three"]
    got = records(out)
    assert [(r["line"], r["id"], r.get("output")) for r in got[4:]] == [(3, "c", "THREE"), (5, 5, "FIVE"),
                                                                       (6, "6", "SIX")]
    assert "3 runs, 0 failed, 4 already in" in result.stderr


def test_resume_reads_records_written_before_each_carried_an_id(pipeline, tmp_path):
    """Older records named an input without an `id` field by its `line` alone: the same id."""
    inputs = jsonl(tmp_path / "in.jsonl", ["one", {"input": "two", "id": "b"}, "three", {"input": "four", "id": 9}])
    out = jsonl(tmp_path / "out.jsonl", [{"index": 0, "line": 1, "input": "one", "ok": True},
                                         {"index": 1, "line": 2, "id": "b", "ok": True},
                                         {"index": 3, "line": 4, "ok": True}])  # line 4's id is 9: not this one
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert sorted(CALLS) == ["four", "three"]
    assert [(r["line"], r.get("id")) for r in records(out)] == [(1, None), (2, "b"), (4, None), (3, 3), (4, 9)]


def test_resume_cuts_a_half_written_last_line_and_runs_its_input_again(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a", "b", "c"])
    out = tmp_path / "out.jsonl"
    assert run(str(pipeline), "--inputs", str(inputs), "--output", str(out)).exit_code == 0
    whole = out.read_text().splitlines(keepends=True)
    out.write_text(whole[0] + whole[1][:25])  # killed half-way through writing the second record
    CALLS.clear()
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert sorted(CALLS) == ["b", "c"]
    assert [(r["line"], r["output"]) for r in records(out)] == [(1, "A"), (2, "B"), (3, "C")]


def test_resume_refuses_an_output_line_that_is_not_a_record(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a"])
    out = tmp_path / "out.jsonl"
    out.write_text('{"line": 1}\nnot json\n{"line": 2}\n')
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(out), "--resume")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {out}:2: not a record of this command: --resume cannot tell which input it answers"]


def test_resume_needs_an_output_file(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a"])
    result = CliRunner().invoke(app, ["run", str(pipeline), "--inputs", str(inputs), "--resume"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert "--resume needs --inputs FILE.jsonl and the --output FILE it appends to" in result.stderr


def test_an_output_that_is_a_directory_is_one_line_and_runs_nothing(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a", "b"])
    result = run(str(pipeline), "--inputs", str(inputs), "--output", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path}: cannot write: Is a directory"]
    assert CALLS == []


def test_a_full_disk_is_one_line(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a", "b"])
    result = run(str(pipeline), "--inputs", str(inputs), "--output", "/dev/full")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "error: /dev/full: cannot write: No space left on device"
    assert "Traceback" not in result.output


def test_read_inputs_is_lazy_and_raises_at_the_bad_line_after_the_good_ones(tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a", "b", Raw("{"), "d"])
    reader = read_inputs(inputs)
    assert [next(reader).payload.prompt, next(reader).payload.prompt] == ["a", "b"]
    with pytest.raises(ConfigError) as caught:
        next(reader)
    assert str(caught.value) == (
        f"{inputs}:3: invalid JSON: Expecting property name enclosed in double quotes (column 2)")


def test_a_line_that_is_not_utf8_is_one_bad_line(tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(b'"a"\n"\xff"\n\n"c"\n')
    got = [(e.line, e.index, str(e.error) if hasattr(e, "error") else e.payload.prompt) for e in read_lines(inputs)]
    assert got == [(1, 0, "a"), (2, 1, f"{inputs}:2: not UTF-8 text (byte 2)"), (4, 2, "c")]


def test_validate_inputs_reports_every_bad_line_and_ids_given_twice(tmp_path):
    lines = [{"input": "a", "id": 1}, Raw("{"), {"input": "b", "id": 1}, {"nope": 1}, "c"]
    inputs = jsonl(tmp_path / "in.jsonl", lines)
    result = CliRunner().invoke(app, ["validate", "--inputs", str(inputs)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"warning: {inputs}:3: id 1 is also the id of line 1; --resume would skip one of them",
        f"error: {inputs}:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"error: {inputs}:4: each line must be a JSON string or an object with an `input` field",
        f"error: {inputs}: 2 bad lines, 3 good",
    ]


def test_validate_inputs_warns_of_an_id_equal_to_the_number_of_a_line_without_one(tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a", {"input": "b", "id": 1}, {"input": "c", "id": 5}, "d", "e",
                                           {"input": "f", "id": "4"}])
    result = CliRunner().invoke(app, ["validate", "--inputs", str(inputs)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: {inputs}:2: id 1 is also the id of line 1, which has none (a line without an id is known by "
        "its number); --resume would skip one of them",
        f"warning: {inputs}:5: a line without an id is known by its number, 5, which is also the id of line 3; "
        "--resume would skip one of them",
    ]


def test_validate_inputs_says_ok_with_the_count(tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a", {"input": "b", "temperature": 0.5}])
    result = CliRunner().invoke(app, ["validate", "--inputs", str(inputs)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: inputs: 2 lines\n"


def test_validate_needs_a_file_or_inputs():
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2


def test_validate_checks_a_pipeline_and_its_inputs_together(pipeline, tmp_path):
    inputs = jsonl(tmp_path / "in.jsonl", ["a"])
    result = CliRunner().invoke(app, ["validate", str(pipeline), "--inputs", str(inputs)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["ok: pipeline 'echo': 1 nodes, 0 edges", "ok: inputs: 1 line"]


def test_input_ids_keep_line_numbers_as_bits_across_growth_and_other_ids_apart_by_json():
    ids = InputIds()
    lines = range(1, 5000, 7)
    for n in lines:
        ids.add(n)
    for other in ("7", [1, 2], {"b": 1, "a": 2}, 1 << 40, True, 2.0):
        ids.add(other)
    assert [n for n in range(5001) if n in ids] == list(lines)
    assert ("7" in ids, [1, 2] in ids, {"a": 2, "b": 1} in ids, 1 << 40 in ids, True in ids, 2.0 in ids) == (
        True, True, True, True, True, True)
    assert ("8" in ids, 14 in ids, 1 in ids, 2 in ids, (1 << 40) + 1 in ids, ids.count) == (
        False, False, True, False, False, len(lines) + 6)
    assert False not in ids and 0 not in ids  # `true` is not the id 1, nor `false` 0
