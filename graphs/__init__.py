"""Graphs: run nodes as a dataflow graph, from code or from a YAML pipeline.

    from graphs import GraphOrchestrator, load_pipeline

    pipeline = load_pipeline("config/pipelines/summarize.yaml")
    run = await pipeline.run("text")
    run.outputs, run.total_cost, run.total_tokens, run.cost_by_node

The `amaos-llm` command line lives in `graphs.cli`.
"""

import logging

from graphs.errors import GraphError, RunFailed, TopologyError
from graphs.events import Event, EventBus, Listener
from graphs.orchestrator import GraphOrchestrator
from graphs.pipeline import Pipeline, PipelineSpec, dump_pipeline, load_pipeline
from graphs.results import RunResult
from graphs.topology import Edge

# A library logs; the application decides what shows (`amaos-llm --log-level`, or your own logging
# setup). Without this, Python's last-resort handler would print every fallback's warning to stderr.
logging.getLogger("graphs").addHandler(logging.NullHandler())

__all__ = [
    "Edge",
    "Event",
    "EventBus",
    "GraphError",
    "GraphOrchestrator",
    "Listener",
    "Pipeline",
    "PipelineSpec",
    "RunFailed",
    "RunResult",
    "TopologyError",
    "dump_pipeline",
    "load_pipeline",
]
