"""A pipeline for the report tests: two model-calling nodes with skips, fallbacks and exact costs."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import anyio

from amaos_llm import Usage
from amaos_llm.types import Attempt
from nodes import Node, ResultMessage, TaskMessage

PRICE_PER_WORD = {"draft": Decimal("0.000123"), "review": Decimal("0.0000071")}


class RoutedFakeNode(Node):
    """Answers like an `llm_manager` node that routed the call: `big` skipped (circuit open),
    `flaky` refused with HTTP 500, `steady` answered. Cost: a price per input word by node id, so
    the costs are exact Decimals that a float would not keep. An input holding `fail` fails. Each
    word takes 1 ms of real time."""

    type_name = "routed_fake"

    async def handle(self, task: TaskMessage) -> ResultMessage:
        words = len(task.content.split())
        skipped = Attempt(model_name="big", provider="openai", outcome="skipped", error="circuit open")
        refused = Attempt(model_name="flaky", provider="ollama", outcome="error", error="HTTP 500", latency=0.01)
        if "fail" in task.content:
            return task.reply(error="all models failed", attempts=(skipped, refused))
        usage = Usage(input_tokens=words, output_tokens=2 * words)
        cost = PRICE_PER_WORD[self.id] * words
        latency = 0.05 * words
        await anyio.sleep(0.001 * words)  # so that the longest input is also the slowest run
        answered = Attempt(model_name="steady", provider="anthropic", outcome="success", latency=latency,
                           usage=usage, cost=cost)
        return task.reply(task.content.upper(), model_name="steady", provider="anthropic", usage=usage, cost=cost,
                          latency=latency, attempts=(skipped, refused, answered))


def write_pipeline(directory: Path) -> Path:
    path = directory / "routed.yaml"
    path.write_text(textwrap.dedent("""
        name: routed <review>
        nodes:
          - {id: prompt, type: prompt_template, config: {template: "answer {input}"}}
          - {id: draft, type: routed_fake}
          - {id: review, type: routed_fake}
          - {id: out, type: output}
        edges:
          - {from: prompt, to: draft}
          - {from: draft, to: review}
          - {from: review, to: out}
        """))
    return path


INPUTS = ["one two", "three four five", "fail now", "<script>alert('x')</script> & more",
          "a " * 300, "six", "seven eight nine ten", "x y", "lots of words in this input here", "b c d e f",
          "last one", "really the last"]


def run_with_report(directory: Path) -> tuple[Path, Path, Path]:
    """`amaos-llm run` of the pipeline over INPUTS with --output and --report: (pipeline, records, report)."""
    from typer.testing import CliRunner

    from graphs.cli import app

    pipeline = write_pipeline(directory)
    inputs = directory / "in.jsonl"
    inputs.write_text("".join(json.dumps({"input": text, "id": i}) + "\n" for i, text in enumerate(INPUTS)))
    out, html = directory / "out.jsonl", directory / "report.html"
    result = CliRunner().invoke(app, ["run", str(pipeline), "--inputs", str(inputs), "--output", str(out),
                                      "--report", str(html), "--concurrency", "3"])
    # Exit code 1 because the `fail` input failed (a crash would be 1 too, without SystemExit)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    return pipeline, out, html


async def expected_costs(pipeline: Path) -> tuple[dict[str, Decimal], Decimal]:
    """What the RunResults themselves say: the sums of `cost_by_node`, and of `total_cost`."""
    from graphs import load_pipeline

    by_node: dict[str, Decimal] = {}
    total = Decimal(0)
    async with load_pipeline(pipeline) as loaded:
        for run in await loaded.run_many(INPUTS):
            total += run.total_cost
            for node_id, cost in run.cost_by_node.items():
                by_node[node_id] = by_node.get(node_id, Decimal(0)) + cost
    return by_node, total
