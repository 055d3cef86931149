"""Mermaid text of a graph, for `amaos-llm graph PIPELINE.yaml` and READMEs."""

from __future__ import annotations

import re
from collections.abc import Iterable

from graphs.topology import Edge
from nodes import Node

_SHAPES = {  # type → (open, close) of a Mermaid node shape
    "input": ("([", "])"),
    "output": ("([", "])"),
    "router": ("{", "}"),
    "join": ("[[", "]]"),
    "llm_manager": ("[/", "/]"),
}


def to_mermaid(nodes: Iterable[Node], edges: Iterable[Edge], title: str | None = None) -> str:
    lines = []
    if title:
        lines += ["---", f"title: {_escape(title)}", "---"]
    lines.append("flowchart TD")
    for node in nodes:
        left, right = _SHAPES.get(node.type_name, ("[", "]"))
        label = node.name if node.name == node.id else f"{node.name} ({node.id})"
        kind = node.type_name or type(node).__name__
        lines.append(f'    {_mid(node.id)}{left}"{_escape(label)}<br/><small>{_escape(kind)}</small>"{right}')
    for edge in edges:
        label = edge.label
        arrow = f'-- "{_escape(label)}" -->' if label else "-->"
        lines.append(f"    {_mid(edge.src)} {arrow} {_mid(edge.dst)}")
    return "\n".join(lines) + "\n"


def _mid(node_id: str) -> str:
    # Mermaid ids are plain words; keep readable ids as they are, make the rest safe and unique.
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node_id) and node_id not in ("end", "graph", "subgraph"):
        return node_id
    return "n_" + "".join(c if c.isalnum() else f"_{ord(c):x}_" for c in node_id)


def _escape(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
