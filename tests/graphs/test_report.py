"""The run report: the numbers it shows are the RunResults' (exactly, for costs), it is rebuilt
identically from the output file alone, it escapes every user text and loads nothing."""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphs._svg import levels
from graphs.cli import app
from graphs.report import INPUT_CHARS, MAX_POINTS, LatencyHistogram, RunReport, build_report, read_report
from nodes import register_node_type
from nodes.registry import _registered
from tests.graphs.report_pipeline import INPUTS, RoutedFakeNode, expected_costs, run_with_report, write_pipeline


@pytest.fixture(autouse=True)
def routed_type():
    register_node_type(RoutedFakeNode)
    yield
    _registered.clear()


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path, Path]:
    return run_with_report(tmp_path)


def cell_costs(page: str, what: str) -> dict[str, Decimal]:
    """The cost column of the node or model table, as Decimals, by row name."""
    return {name: Decimal(value) for name, value in re.findall(
        rf'<td class="num cost" data-{what}="([^"]+)">\$([0-9.]+)', page)}


@pytest.mark.anyio
async def test_per_node_costs_equal_the_run_results_exactly(batch):
    pipeline, _, html = batch
    by_node, total = await expected_costs(pipeline)
    page = html.read_text()
    assert cell_costs(page, "node") == by_node
    # The template adds a word ("answer ..."); the failed input costs nothing.
    assert by_node["draft"] == Decimal("0.000123") * sum(len(t.split()) + 1 for t in INPUTS if "fail" not in t)
    assert f"total cost ${total:f}" in page


def test_the_report_command_rebuilds_the_same_page_from_the_file_alone(batch, tmp_path):
    _, out, html = batch
    again = tmp_path / "again.html"
    result = CliRunner().invoke(app, ["report", str(out), "-o", str(again)])
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == html.read_bytes()


def test_models_show_calls_failures_fallbacks_and_skips_by_reason(batch):
    _, out, _ = batch
    report = read_report(out)
    answered = 2 * (len(INPUTS) - 1)  # draft and review for every input but the failed one
    steady, flaky, big = report.models["steady"], report.models["flaky"], report.models["big"]
    assert (steady.calls, steady.successes, steady.failures, steady.fallbacks) == (answered, answered, 0, 0)
    assert (flaky.calls, flaky.failures, flaky.fallbacks) == (answered + 1, answered + 1, answered)
    assert (big.calls, big.skips) == (0, {"circuit open": answered + 1})
    draft = report.nodes["draft"]
    assert (draft.calls, draft.successes, draft.failures, draft.fallbacks) == (len(INPUTS), 11, 1, 11)
    assert report.nodes["review"].calls == 11  # not reached from the failed draft
    assert steady.input_tokens == 2 * sum(len(t.split()) + 1 for t in INPUTS if "fail" not in t)


def test_user_text_is_escaped_and_the_page_loads_nothing(batch):
    page = batch[2].read_text()
    assert "<script" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "routed &lt;review&gt;" in page
    assert not re.search(r"<link|@import|@font-face|\bsrc=|url\((?!#)", page)


def test_slowest_and_priciest_keep_ten_runs_with_inputs_cut_to_200_chars(batch):
    report = read_report(batch[1])
    assert len(report.slowest) == len(report.priciest) == 10
    longest = report.slowest[0]
    assert longest.where == "id 4" and longest.input == ("a " * 300)[:INPUT_CHARS] + "…"
    costs = [s.cost for s in report.priciest]
    # "answer a a ...": 301 words, for the draft and then for the review of its answer
    assert costs == sorted(costs, reverse=True) and costs[0] == (Decimal("0.000123") + Decimal("0.0000071")) * 301


def test_the_graph_is_drawn_from_the_pipeline_carried_by_the_first_record(batch):
    _, out, html = batch
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert ["pipeline" in r for r in lines] == [True] + [False] * (len(lines) - 1)
    assert lines[0]["pipeline"]["edges"][0] == {"from": "prompt", "to": "draft"}
    page = html.read_text()
    assert page.count('<g class="node"') == 4 and page.count('<g class="edge"') == 3


def test_resume_appends_without_a_second_pipeline_and_the_report_counts_every_run(batch, tmp_path):
    pipeline, out, _ = batch
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]))
    inputs = tmp_path / "in.jsonl"
    result = CliRunner().invoke(app, ["run", str(pipeline), "--inputs", str(inputs), "--output", str(out), "--resume"])
    assert result.exit_code == 0, result.output  # the failed input was among the five kept
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == list(range(len(INPUTS)))
    assert sum("pipeline" in r for r in records) == 1
    assert read_report(out).runs == len(INPUTS)


def test_a_file_of_older_records_still_reports(tmp_path):
    """Records from before the report: float costs, no pipeline, no attempts."""
    old = {"index": 0, "input": "hi", "ok": True, "errors": {}, "cost": 0.0015, "tokens": 7, "wall_time": 0.3,
           "llm": {"llm": {"model": "m", "provider": "p", "input_tokens": 3, "output_tokens": 4, "cost": 0.0015,
                           "latency": 0.25}}}
    report = build_report([old, {**old, "index": 1}])
    assert report.nodes["llm"].cost == report.models["m"].cost == Decimal("0.0030")
    assert report.models["m"].latency.quantile(0.5) == 0.25
    assert report.graph() == ([("llm", "")], [])


def test_run_without_output_reports_the_records_it_printed(tmp_path):
    pipeline = write_pipeline(tmp_path)
    html = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["run", str(pipeline), "--input", "two words", "--report", str(html)])
    assert result.exit_code == 0, result.output
    assert cell_costs(html.read_text(), "node") == {
        "prompt": Decimal(0), "draft": Decimal("0.000369"), "review": Decimal("0.0000213"), "out": Decimal(0)}


def test_memory_stays_bounded_over_many_records():
    report = RunReport()
    rng = random.Random(7)
    for i in range(20_000):
        latency = rng.lognormvariate(0, 1)
        report.add({"index": i, "input": "x" * 1000, "ok": True, "errors": {}, "cost_usd": "0.001",
                    "cost_by_node": {"n": "0.001"}, "wall_time": latency, "finished_at": 1000.0 + i,
                    "llm": {"n": {"model": "m", "cost_usd": "0.001", "latency": latency}}})
    assert len(report._slowest) == len(report._priciest) == 10
    assert len(report.cost_points) <= MAX_POINTS + 2
    assert len(report.models["m"].latency.bins) < 800
    assert report.cost == Decimal("20.000") and report.cost_points[-1] == (19999.0, Decimal("20.000"))


def test_percentiles_from_the_bins_are_within_two_percent():
    rng = random.Random(3)
    values = [rng.uniform(0.01, 30) for _ in range(5000)]
    hist = LatencyHistogram()
    for v in values:
        hist.add(v)
    ordered = sorted(values)
    for q in (0.5, 0.95):
        exact = ordered[round(q * (len(values) - 1))]
        assert abs(hist.quantile(q) - exact) / exact < 0.02


def test_levels_follow_the_longest_path_and_ignore_a_loop_back():
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "b2"), ("b2", "b")]  # b2 → b closes a loop
    assert levels(["a", "b", "c", "b2"], edges) == {"a": 0, "b": 1, "c": 2, "b2": 3}


@pytest.mark.parametrize("line", ['[1, 2]', '{"input": "x", "cost_usd": "lots"}', '{"input": "x", "llm": [1]}'])
def test_a_line_that_is_not_a_run_record_is_one_error_naming_its_line(tmp_path, line):
    out = tmp_path / "out.jsonl"
    out.write_text('{"input": "fine", "cost_usd": "0.1"}\n' + line + "\n")
    result = CliRunner().invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {out}:2: not a record of `amaos-llm run`")


def test_resume_of_a_file_written_before_the_report_adds_the_pipeline_once(batch, tmp_path):
    pipeline, out, _ = batch
    older = [{k: v for k, v in json.loads(line).items() if k != "pipeline"} for line in out.read_text().splitlines()]
    out.write_text("".join(json.dumps(r) + "\n" for r in older[:4]))
    result = CliRunner().invoke(app, ["run", str(pipeline), "--inputs", str(tmp_path / "in.jsonl"), "--output",
                                      str(out), "--resume"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert ["pipeline" in r for r in records] == [False] * 4 + [True] + [False] * (len(INPUTS) - 5)
    assert read_report(out).graph()[1] == [("prompt", "draft", None), ("draft", "review", None),
                                           ("review", "out", None)]


def test_a_batch_printed_to_stdout_is_reported_from_the_printed_records(tmp_path):
    pipeline = write_pipeline(tmp_path)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('"one two"\n"three"\n')
    html = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["run", str(pipeline), "--inputs", str(inputs), "--report", str(html)])
    assert result.exit_code == 0, result.output
    printed = build_report(json.loads(line) for line in result.stdout.splitlines())
    assert printed.runs == 2 and printed.pipeline is not None
    assert cell_costs(html.read_text(), "node")["draft"] == Decimal("0.000123") * (3 + 2)


def test_a_retry_of_the_same_model_is_not_a_fallback():
    def attempt(model: str, outcome: str) -> dict:
        return {"model": model, "provider": "p", "outcome": outcome, "latency": 0.1}

    retried = [attempt("a", "error"), attempt("a", "timeout"), attempt("a", "success")]
    fell_back = [attempt("a", "error"), attempt("a", "error"), attempt("b", "success")]
    records = [{"input": "x", "ok": True, "errors": {}, "cost_by_node": {"n": "0"},
                "llm": {"n": {"model": attempts[-1]["model"], "latency": 0.3, "attempts": attempts}}}
               for attempts in (retried, fell_back)]
    report = build_report(records)
    assert report.nodes["n"].fallbacks == 1
    assert (report.models["a"].failures, report.models["a"].fallbacks) == (4, 1)
