"""The run report: one self-contained HTML page from the records `amaos-llm run` writes.

    amaos-llm run PIPELINE.yaml --inputs IN.jsonl --output OUT.jsonl --report report.html
    amaos-llm report OUT.jsonl -o report.html          # the same page, from OUT alone

`RunReport.add(record)` takes the records one at a time and keeps only aggregates: counters and
exact Decimal costs per node and per model, a log-binned latency histogram per row (percentiles are
read from it, within 2%), the 10 slowest and 10 most expensive runs (heaps), and a cost-over-time
line thinned to at most 512 points. Memory therefore stays flat however long the file is.

Costs are summed from the records' exact `*_usd` strings, so the page's per-node costs equal the
sums of the RunResults' `cost_by_node`; older records without them fall back to their floats. A
field the records do not carry (latency of a node that calls no model, a budget) is left out.

The page has inline CSS and inline SVG only: no script, no font, no request, so it opens offline.
Every text that came from a user (inputs, ids, error reasons) is HTML-escaped.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from amaos_llm import ConfigError
from graphs._svg import GraphNode, esc, graph_svg, histogram_svg, line_svg, share_colour

TOP = 10
INPUT_CHARS = 200
MAX_POINTS = 512
ZERO = Decimal(0)
_RATIO = math.log(1.02)  # latency bins 2% wide: a percentile read from them is within 2%
_FAILED = frozenset({"error", "timeout", "cancelled", "rejected"})


class LatencyHistogram:
    """Latencies in log-spaced bins (a few hundred at most for 1 ms..1 h), with exact min and max."""

    def __init__(self) -> None:
        self.bins: Counter[int] = Counter()
        self.count = 0
        self.low = math.inf
        self.high = 0.0

    def add(self, seconds: float) -> None:
        self.bins[math.floor(math.log(max(seconds, 1e-6)) / _RATIO)] += 1
        self.count += 1
        self.low = min(self.low, seconds)
        self.high = max(self.high, seconds)

    def quantile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            if seen > rank:
                middle = math.exp((b + 0.5) * _RATIO)
                return min(max(middle, self.low), self.high)  # one value, or all in one bin: exact
        return self.high

    def bars(self, n: int = 16) -> list[tuple[float, float, int]]:
        """`n` equal-width bars from min to max (each fine bin counted at its middle)."""
        if not self.count:
            return []
        if self.high == self.low:
            return [(self.low, self.high, self.count)]
        width = (self.high - self.low) / n
        counts = [0] * n
        for b, c in self.bins.items():
            middle = min(max(math.exp((b + 0.5) * _RATIO), self.low), self.high)
            counts[min(int((middle - self.low) / width), n - 1)] += c
        return [(self.low + i * width, self.low + (i + 1) * width, c) for i, c in enumerate(counts)]


@dataclass
class Row:
    """One line of the node or model table."""

    calls: int = 0
    successes: int = 0
    failures: int = 0
    fallbacks: int = 0
    skips: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = ZERO
    unpriced: int = 0  # calls whose cost is unknown (counted as 0 in `cost`)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass(frozen=True)
class RunSummary:
    where: str  # `#index`, `line N` or `id X`
    input: str  # cut to INPUT_CHARS
    cost: Decimal
    wall_time: float
    ok: bool


class RunReport:
    """The aggregates of a stream of run records (see the module docstring)."""

    def __init__(self, title: str | None = None) -> None:
        self.title = title
        self.pipeline: dict[str, Any] | None = None
        self.nodes: dict[str, Row] = {}
        self.models: dict[str, Row] = {}
        self.runs = self.failed = self.bad_inputs = 0
        self.cost = ZERO
        self.input_tokens = self.output_tokens = 0
        self.wall_time = 0.0
        self.budget: dict[str, Any] | None = None
        self._slowest: list[tuple[float, int, RunSummary]] = []
        self._priciest: list[tuple[Decimal, int, RunSummary]] = []
        self._points: list[tuple[float, Decimal]] = []
        self._stride = 1
        self._last: tuple[float, Decimal] | None = None
        self._t0: float | None = None
        self._timed = True  # every record so far had `finished_at`

    # -- reading ------------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> None:
        if isinstance(record.get("pipeline"), dict):
            self.pipeline = record["pipeline"]
        if isinstance(record.get("budget"), dict):  # written by managers that enforce a budget
            self.budget = record["budget"]
        if record.get("input") is None and "input" in record.get("errors", {}):
            self.bad_inputs += 1  # a line that was not an input: no run, nothing to count
            return
        self.runs += 1
        self.failed += not record.get("ok", True)
        cost = _money(record.get("cost_usd"), record.get("cost"))
        self.cost += cost
        self.wall_time += float(record.get("wall_time") or 0.0)
        errors: dict[str, str] = record.get("errors") or {}
        llm: dict[str, dict[str, Any]] = record.get("llm") or {}
        by_node = record.get("cost_by_node")
        ran = list(by_node) if isinstance(by_node, dict) else list(dict.fromkeys([*llm, *errors]))
        not_run = set(record.get("upstream_failed") or ())
        for node_id in ran:
            if node_id in not_run:
                continue
            entry = llm.get(node_id)
            node_cost = _money(by_node.get(node_id), None) if isinstance(by_node, dict) else (
                _money(entry.get("cost_usd"), entry.get("cost")) if entry else ZERO)
            self._add_node(self.nodes.setdefault(node_id, Row()), entry, node_id in errors, node_cost)
            if entry:
                self._add_models(entry, node_id in errors)
        self._add_run(record, cost)

    def _add_node(self, row: Row, entry: dict[str, Any] | None, failed: bool, cost: Decimal) -> None:
        row.calls += 1
        row.failures += failed
        row.successes += not failed
        row.cost += cost
        if entry is None:
            return
        row.input_tokens += int(entry.get("input_tokens") or 0)
        row.output_tokens += int(entry.get("output_tokens") or 0)
        row.unpriced += entry.get("cost") is None and not failed
        if entry.get("model") is not None:
            row.latency.add(float(entry.get("latency") or 0.0))
        sent = [a for a in entry.get("attempts") or () if a.get("outcome") != "skipped"]
        row.fallbacks += any(_fell_back(sent, i) for i in range(len(sent)))
        for a in entry.get("attempts") or ():
            if a.get("outcome") == "skipped":
                row.skips[_reason(a)] += 1

    def _add_models(self, entry: dict[str, Any], failed: bool) -> None:
        attempts = entry.get("attempts")
        if not attempts:  # a node that reports no attempts: its one model answered, or not
            if entry.get("model") is None:
                return
            row = self.models.setdefault(entry["model"], Row())
            row.calls += 1
            row.failures += failed
            row.successes += not failed
            row.input_tokens += int(entry.get("input_tokens") or 0)
            row.output_tokens += int(entry.get("output_tokens") or 0)
            row.cost += _money(entry.get("cost_usd"), entry.get("cost"))
            row.latency.add(float(entry.get("latency") or 0.0))
            return
        sent = [a for a in attempts if a.get("outcome") != "skipped"]
        fell_back = {id(a) for i, a in enumerate(sent) if _fell_back(sent, i)}
        for a in attempts:
            row = self.models.setdefault(str(a.get("model")), Row())
            outcome = a.get("outcome")
            if outcome == "skipped":
                row.skips[_reason(a)] += 1
                continue
            row.calls += 1
            row.latency.add(float(a.get("latency") or 0.0))
            row.input_tokens += int(a.get("input_tokens") or 0)
            row.output_tokens += int(a.get("output_tokens") or 0)
            row.cost += _money(a.get("cost_usd"), None)
            if outcome == "success":
                row.successes += 1
                row.unpriced += "cost_usd" not in a
            else:
                row.failures += 1
                row.fallbacks += id(a) in fell_back

    def _add_run(self, record: dict[str, Any], cost: Decimal) -> None:
        rid, line = record.get("id"), record.get("line")
        # An input without an `id` field has its line number as its id: shown as the line it is.
        where = (f"line {line}" if line is not None and (rid is None or (type(rid) is int and rid == line))
                 else f"id {json.dumps(rid)}" if rid is not None else f"#{record.get('index', self.runs - 1)}")
        text = str(record.get("input") or "")
        summary = RunSummary(where, text if len(text) <= INPUT_CHARS else text[:INPUT_CHARS] + "…", cost,
                             float(record.get("wall_time") or 0.0), bool(record.get("ok", True)))
        # Ties keep the earlier run: the sequence number, negated, ranks it higher in the min-heap.
        _keep(self._slowest, (summary.wall_time, -self.runs, summary))
        _keep(self._priciest, (cost, -self.runs, summary))
        finished = record.get("finished_at")
        self._timed = self._timed and isinstance(finished, (int, float))
        if self._timed:
            self._t0 = finished if self._t0 is None else self._t0
            x = round(float(finished) - float(self._t0 or 0.0), 3)
        else:
            x = float(self.runs)
        cumulative = (self._last[1] if self._last else ZERO) + cost
        self._last = (x, cumulative)
        if self.runs % self._stride == 0:
            self._points.append(self._last)
            if len(self._points) > MAX_POINTS:  # keep every other point, and half as many from now on
                self._points = self._points[1::2]
                self._stride *= 2

    # -- results ------------------------------------------------------------------------------

    @property
    def timed(self) -> bool:
        """Whether the cost line's x axis is seconds (every record had `finished_at`), else runs."""
        return self._timed

    @property
    def slowest(self) -> list[RunSummary]:
        return [s for _, _, s in sorted(self._slowest, reverse=True)]

    @property
    def priciest(self) -> list[RunSummary]:
        return [s for _, _, s in sorted(self._priciest, reverse=True)]

    @property
    def cost_points(self) -> list[tuple[float, Decimal]]:
        points = [(0.0, ZERO), *self._points]
        if self._last is not None and points[-1] != self._last:
            points.append(self._last)
        return points

    def graph(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, str | None]]]:
        """The nodes `(id, type)` and edges to draw: the pipeline's, plus any node only the records name."""
        shape = self.pipeline or {}
        nodes = [(str(n["id"]), str(n.get("type", ""))) for n in shape.get("nodes", ())]
        known = {n for n, _ in nodes}
        nodes += [(n, "") for n in self.nodes if n not in known]
        edges = [(str(e["from"]), str(e["to"]), e.get("label")) for e in shape.get("edges", ())]
        return nodes, edges


def _fell_back(sent: list[dict[str, Any]], i: int) -> bool:
    """Whether sent attempt `i` failed and the next one sent was another model's: the loop gave up
    on this model (a retry of the same model is not a fallback)."""
    return (sent[i].get("outcome") in _FAILED and i + 1 < len(sent)
            and sent[i + 1].get("model") != sent[i].get("model"))


def _keep(heap: list[Any], item: tuple[Any, int, RunSummary]) -> None:
    if len(heap) < TOP:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def _money(exact: Any, approx: Any) -> Decimal:
    """The exact cost string when the record has one, else the float (older records), else 0."""
    if isinstance(exact, str):
        return Decimal(exact)
    if isinstance(approx, (int, float)):
        return Decimal(str(approx))
    return ZERO


def _reason(attempt: dict[str, Any]) -> str:
    reason = str(attempt.get("error") or "no reason given")
    return reason if len(reason) <= 80 else reason[:79] + "…"


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, record)` for each record of an output file, a line at a time; a line that is
    not a JSON object is a `ConfigError`. A last line without its newline (a run cut off mid-write)
    is left out, as `--resume` does."""
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from None
    with file:
        for number, raw in enumerate(file, start=1):
            if not raw.endswith(b"\n") or not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if not isinstance(record, dict):
                raise ConfigError("not a record of `amaos-llm run`", path=str(path), line=number)
            yield number, record


def read_report(path: str | Path) -> RunReport:
    report = RunReport()
    for number, record in iter_records(path):
        try:
            report.add(record)
        # A field of the wrong shape (a list where a mapping goes, a cost that is not a number):
        # the file was not written by `amaos-llm run`, or was edited. Say where, once.
        except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as exc:
            raise ConfigError(f"not a record of `amaos-llm run` ({type(exc).__name__}: {exc})",
                              path=str(path), line=number) from None
    return report


def build_report(records: Iterable[dict[str, Any]]) -> RunReport:
    report = RunReport()
    for record in records:
        report.add(record)
    return report


# -- the page -----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1b1b;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.summary{color:#444}table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ddd;padding:4px 8px}
th{background:#f4f6f8;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.input{max-width:640px;white-space:pre-wrap;word-break:break-word}.failed{color:#b00020}
.node-title{font-weight:600;font-size:13px}.node-type{font-weight:400;font-size:11px;opacity:.8}
.node-line{font-size:11.5px}.edge-label{font-size:11px;fill:#444}.axis{font-size:10px;fill:#555}
.hists{display:flex;flex-wrap:wrap;gap:18px}.hists figure{margin:0}figcaption{font-size:12px;color:#444}
.note{font-size:12px;color:#666}
"""


def render_html(report: RunReport) -> str:
    title = report.title or (report.pipeline or {}).get("name") or "run report"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)} · amaos-llm run report</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>", _summary(report), "<h2>Pipeline</h2>", _graph(report),
             "<h2>Nodes</h2>", _table(report.nodes, "node", report), "<h2>Models</h2>",
             _table(report.models, "model", report), _budget(report), "<h2>Latency per model</h2>",
             _histograms(report), "<h2>Cost over time</h2>", _cost_line(report),
             "<h2>Slowest runs</h2>", _runs(report.slowest), "<h2>Most expensive runs</h2>",
             _runs(report.priciest),
             '<p class="note">p50/p95 are read from 2%-wide latency bins. Costs are exact sums of the '
             "runs' costs; a model without a price counts as $0 and is listed as unpriced. "
             "Fallbacks: per node, calls where a model failed and another was tried; per model, the times it "
             "failed and the call moved on to another model (a retry of the same model is not one).</p>",
             "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report(report: RunReport, path: str | Path) -> None:
    try:
        Path(path).write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", path=str(path)) from None


def _usd(cost: Decimal) -> str:
    return f"${cost:f}"


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.3f} s"


def _summary(r: RunReport) -> str:
    parts = [f"{r.runs} runs", f"{r.failed} failed"]
    if r.bad_inputs:
        parts.append(f"{r.bad_inputs} bad input lines")
    parts += [f"total cost {_usd(r.cost)}", f"{r.wall_time:.2f} s of run time"]
    return f'<p class="summary">{esc(", ".join(parts))}</p>'


def _graph(r: RunReport) -> str:
    nodes, edges = r.graph()
    if not nodes:
        return '<p class="note">no runs</p>'
    drawn = []
    for node_id, kind in nodes:
        row = r.nodes.get(node_id, Row())
        share = float(row.cost / r.cost) if r.cost else 0.0
        lines = [f"calls {row.calls} · failed {row.failures}", f"cost {_usd(row.cost)}"]
        if row.latency.count:
            lines.append(f"p50 {_secs(row.latency.quantile(0.5))} · p95 {_secs(row.latency.quantile(0.95))}")
        drawn.append(GraphNode(node_id, kind, share_colour(share), tuple(lines)))
    return graph_svg(drawn, edges)


def _table(rows: dict[str, Row], what: str, r: RunReport) -> str:
    if not rows:
        return f'<p class="note">no {what}s</p>'
    heads = [what, "calls", "successes", "failures", "fallbacks", "skips by reason", "input tokens",
             "output tokens", "cost", "p50 latency", "p95 latency"]
    out = [f'<table id="{what}s"><thead><tr>' + "".join(f"<th>{h}</th>" for h in heads) + "</tr></thead><tbody>"]
    for name, row in rows.items():
        skips = "; ".join(f"{reason} ×{n}" for reason, n in row.skips.most_common())
        cost = _usd(row.cost) + (f" ({row.unpriced} unpriced)" if row.unpriced else "")
        cells = [f"<td>{esc(name)}</td>", *(f'<td class="num">{v}</td>' for v in (
            row.calls, row.successes, row.failures, row.fallbacks)), f"<td>{esc(skips)}</td>",
            f'<td class="num">{row.input_tokens}</td>', f'<td class="num">{row.output_tokens}</td>',
            f'<td class="num cost" data-{what}="{esc(name)}">{esc(cost)}</td>',
            f'<td class="num">{_secs(row.latency.quantile(0.5))}</td>',
            f'<td class="num">{_secs(row.latency.quantile(0.95))}</td>']
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _budget(r: RunReport) -> str:
    if not r.budget:
        return ""
    cells = "".join(f"<tr><th>{esc(k)}</th><td class='num'>{esc(v)}</td></tr>" for k, v in r.budget.items())
    return f'<h2>Budget</h2><table id="budget">{cells}</table>'


def _histograms(r: RunReport) -> str:
    figures = [f"<figure>{histogram_svg(row.latency.bars(), title=f'latency of {name}')}"
               f"<figcaption>{esc(name)}: {row.latency.count} calls</figcaption></figure>"
               for name, row in r.models.items() if row.latency.count]
    return f'<div class="hists">{"".join(figures)}</div>' if figures else '<p class="note">no model calls</p>'


def _cost_line(r: RunReport) -> str:
    if not r.runs:
        return '<p class="note">no runs</p>'
    points = [(x, float(c)) for x, c in r.cost_points]
    unit = "s" if r.timed else "runs"
    return line_svg(points, x_unit=unit, title="cumulative cost")


def _runs(runs: list[RunSummary]) -> str:
    if not runs:
        return '<p class="note">no runs</p>'
    out = ["<table><thead><tr><th>run</th><th>wall time</th><th>cost</th><th>ok</th><th>input</th></tr></thead><tbody>"]
    for s in runs:
        ok = "yes" if s.ok else '<span class="failed">failed</span>'
        out.append(f"<tr><td>{esc(s.where)}</td><td class='num'>{s.wall_time:.3f} s</td>"
                   f"<td class='num'>{_usd(s.cost)}</td><td>{ok}</td><td class='input'>{esc(s.input)}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)
