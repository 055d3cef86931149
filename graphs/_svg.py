"""Inline SVG for the run report: the pipeline graph, a histogram, a line. Text only, no script.

Every string that came from a user (node ids, types, edge labels) goes through `esc`; the numbers
are formatted here. The drawings are plain shapes so the page renders the same in any browser,
offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

NODE_W, NODE_H = 210, 84
GAP_X, GAP_Y = 36, 64
PAD = 20

# A node's fill goes from COLD (no share of the cost) to HOT (all of it).
COLD = (231, 240, 250)
HOT = (232, 89, 12)


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def share_colour(share: float) -> str:
    """The fill for a node with `share` (0..1) of the total cost: an `#rrggbb` between COLD and HOT."""
    s = min(max(share, 0.0), 1.0)
    r, g, b = (round(c + (h - c) * s) for c, h in zip(COLD, HOT, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def ink_for(fill: str) -> str:
    """Black or white text, whichever reads on `fill`."""
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


@dataclass(frozen=True)
class GraphNode:
    id: str
    type: str
    fill: str
    lines: tuple[str, ...]  # the label under the title: calls, failures, cost, latency


def levels(node_ids: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each node's topological level: the longest path to it from a node with no inputs. Edges that
    close a loop (found by a depth-first walk in node order) do not count, so loops still lay out."""
    succ: dict[str, list[str]] = {n: [] for n in node_ids}
    for src, dst in edges:
        if src in succ and dst in succ:
            succ[src].append(dst)
    back = _back_edges(node_ids, succ)
    indegree = {n: 0 for n in node_ids}
    for src, targets in succ.items():
        for dst in targets:
            if (src, dst) not in back:
                indegree[dst] += 1
    level = {n: 0 for n in node_ids}
    ready = [n for n in node_ids if indegree[n] == 0]
    while ready:  # Kahn's order: a node is placed once every forward input is
        src = ready.pop(0)
        for dst in succ[src]:
            if (src, dst) in back:
                continue
            level[dst] = max(level[dst], level[src] + 1)
            indegree[dst] -= 1
            if indegree[dst] == 0:
                ready.append(dst)
    return level


def _back_edges(node_ids: Sequence[str], succ: Mapping[str, list[str]]) -> set[tuple[str, str]]:
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    for root in node_ids:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return back


def graph_svg(nodes: Sequence[GraphNode], edges: Sequence[tuple[str, str, str | None]]) -> str:
    """The pipeline, top to bottom by level, each node a box coloured by its cost share."""
    ids = [n.id for n in nodes]
    level = levels(ids, [(s, d) for s, d, _ in edges])
    rows: dict[int, list[GraphNode]] = {}
    for n in nodes:
        rows.setdefault(level[n.id], []).append(n)
    widest = max(len(r) for r in rows.values())
    width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X
    height = PAD * 2 + len(rows) * NODE_H + (len(rows) - 1) * GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for row, members in sorted(rows.items()):
        span = len(members) * NODE_W + (len(members) - 1) * GAP_X
        x0 = (width - span) / 2
        for i, n in enumerate(members):
            where[n.id] = (x0 + i * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    out = [f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="pipeline graph">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for src, dst, label in edges:
        if src in where and dst in where:
            out.append(_edge(where[src], where[dst], label, forward=level[dst] > level[src]))
    for n in nodes:
        out.append(_node(n, *where[n.id]))
    out.append("</svg>")
    return "\n".join(out)


def _edge(a: tuple[float, float], b: tuple[float, float], label: str | None, *, forward: bool) -> str:
    if forward:
        x1, y1 = a[0] + NODE_W / 2, a[1] + NODE_H
        x2, y2 = b[0] + NODE_W / 2, b[1]
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + GAP_Y / 2:.1f} {x2:.1f},{y2 - GAP_Y / 2:.1f} {x2:.1f},{y2:.1f}"
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        dash = ""
    else:  # a loop's way back (or a same-level edge): around the right-hand side, dashed
        x1, y1 = a[0] + NODE_W, a[1] + NODE_H / 2
        x2, y2 = b[0] + NODE_W, b[1] + NODE_H / 2
        bend = max(x1, x2) + GAP_X
        path = f"M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        mx, my = bend - 4, (y1 + y2) / 2
        dash = ' stroke-dasharray="5 4"'
    text = (f'<text x="{mx + 4:.1f}" y="{my:.1f}" class="edge-label">{esc(label)}</text>' if label else "")
    return (f'<g class="edge"><path d="{path}" fill="none" stroke="#555" stroke-width="1.5"{dash} '
            f'marker-end="url(#arrow)"/>{text}</g>')


def _node(n: GraphNode, x: float, y: float) -> str:
    ink = ink_for(n.fill)
    parts = [f'<g class="node" data-node="{esc(n.id)}">',
             f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="8" fill="{n.fill}" '
             'stroke="#333" stroke-width="1"/>',
             f'<text x="{x + 10:.1f}" y="{y + 18:.1f}" fill="{ink}" class="node-title">{esc(_clip(n.id, 20))} '
             f'<tspan class="node-type">{esc(_clip(n.type, 14))}</tspan></text>']
    for i, line in enumerate(n.lines):
        parts.append(f'<text x="{x + 10:.1f}" y="{y + 36 + i * 15:.1f}" fill="{ink}" class="node-line">'
                     f"{esc(line)}</text>")
    parts.append("</g>")
    return "".join(parts)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def histogram_svg(bars: Sequence[tuple[float, float, int]], *, title: str) -> str:
    """Bars `(low, high, count)` in order, as a small bar chart with the range under it."""
    w, h, left, bottom = 320, 130, 34, 22
    top = max((c for _, _, c in bars), default=0) or 1
    bar_w = (w - left - 6) / max(len(bars), 1)
    out = [f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}">',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - 4}" y2="{h - bottom}" stroke="#888"/>',
           f'<text x="2" y="12" class="axis">{top}</text>']
    for i, (low, high, count) in enumerate(bars):
        bh = (h - bottom - 16) * count / top
        out.append(f'<rect x="{left + i * bar_w + 1:.1f}" y="{h - bottom - bh:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                   f'height="{bh:.1f}" fill="#4a78c2"><title>{low:.3f}–{high:.3f} s: {count}</title></rect>')
    if bars:
        out.append(f'<text x="{left}" y="{h - 6}" class="axis">{bars[0][0]:.3f} s</text>')
        out.append(f'<text x="{w - 4}" y="{h - 6}" class="axis" text-anchor="end">{bars[-1][1]:.3f} s</text>')
    out.append("</svg>")
    return "".join(out)


def line_svg(points: Sequence[tuple[float, float]], *, x_unit: str, title: str) -> str:
    """A line through `points` (x rising), axes labelled with the ranges."""
    w, h, left, bottom = 640, 200, 70, 24
    xs = [p[0] for p in points] or [0.0]
    ys = [p[1] for p in points] or [0.0]
    x0, x1 = min(xs), max(xs)
    y1 = max(ys)
    sx = (w - left - 10) / ((x1 - x0) or 1.0)
    sy = (h - bottom - 12) / (y1 or 1.0)  # all free: a flat line at $0
    coords = " ".join(f"{left + (x - x0) * sx:.1f},{h - bottom - y * sy:.1f}" for x, y in points)
    return (f'<svg id="cost-over-time" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}">'
            f'<line x1="{left}" y1="{h - bottom}" x2="{w - 4}" y2="{h - bottom}" stroke="#888"/>'
            f'<line x1="{left}" y1="8" x2="{left}" y2="{h - bottom}" stroke="#888"/>'
            f'<text x="{left - 4}" y="16" class="axis" text-anchor="end">${y1:.4f}</text>'
            f'<text x="{left - 4}" y="{h - bottom}" class="axis" text-anchor="end">$0</text>'
            f'<text x="{left}" y="{h - 6}" class="axis">{x0:g} {x_unit}</text>'
            f'<text x="{w - 4}" y="{h - 6}" class="axis" text-anchor="end">{x1:g} {x_unit}</text>'
            f'<polyline points="{coords}" fill="none" stroke="#e8590c" stroke-width="2"/></svg>')
