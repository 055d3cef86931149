"""One worker of a Ray job (`graphs.executors.RayExecutor`): a Ray actor holding ONE pipeline.

The pipeline is loaded once, when the actor starts, with its nodes and managers; every batch sent
to the actor then runs on it, `concurrency` runs at a time across all the batches the actor holds
(the driver keeps two in flight per actor so that it never waits between batches). A batch comes
back as its records, in the batch's order; the driver alone writes them.

This module does not import Ray: `RayExecutor` wraps the class with `ray.remote` when a job starts,
so that `import graphs` never loads Ray.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from graphs.batch import BatchItem, run_record
from graphs.errors import RunFailed
from graphs.pipeline import Pipeline, load_pipeline


@dataclass(frozen=True)
class PipelineSource:
    """How a worker loads the driver's pipeline: its YAML path and the CLI's overrides. The path
    (and the files it names) must be readable at the same place on every node of the cluster."""

    path: str
    local_only: bool | None = None
    config_path: str | None = None

    def load(self) -> Pipeline:
        return load_pipeline(self.path, local_only=self.local_only, config_path=self.config_path)


class PipelineWorker:
    """The actor's class. `env` holds the API keys the pipeline's models name: they travel as the
    actor's creation arguments (in memory), not in a `runtime_env`, whose values Ray's runtime-env
    agent writes to its log file."""

    def __init__(self, source: PipelineSource, concurrency: int, env: Mapping[str, str],
                 trace: Mapping[str, str] | None = None) -> None:
        os.environ.update(env)  # before the managers are built: they read their keys from the environment
        self._otel: Any = None
        self._trace_context: Any = None
        if trace is not None:  # the driver traces: export from here too, each run under the job's span
            from opentelemetry import propagate

            from graphs.otel import configure_from_env

            self._otel = configure_from_env()  # global here, before the managers decide whether to record
            self._trace_context = propagate.extract(dict(trace))
        self._pipeline = source.load()
        if self._otel is not None:
            self._pipeline.orchestrator.instrument()
        self._concurrency = concurrency
        self._limiter: anyio.CapacityLimiter | None = None  # made in the actor's event loop, at the first batch

    async def ready(self) -> int:
        """Awaited by the driver before it sends batches: the actor started and loaded the pipeline."""
        await self._pipeline.initialize()
        return os.getpid()

    async def run(self, items: list[BatchItem]) -> list[dict[str, Any]]:
        """The records of a batch's runs, in the batch's order."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        limiter, orchestrator = self._limiter, self._pipeline.orchestrator
        records: list[dict[str, Any] | None] = [None] * len(items)

        async def one(i: int, item: BatchItem) -> None:
            token = None
            if self._trace_context is not None:  # this task's runs nest under the driver's job span
                from opentelemetry import context

                token = context.attach(self._trace_context)
            try:
                async with limiter:
                    try:
                        result = await orchestrator.run(item.payload, metadata=item.metadata)
                    except RunFailed as exc:  # a fail_fast pipeline: its partial result is the record
                        result = exc.result
            finally:
                if token is not None:
                    from opentelemetry import context

                    context.detach(token)
            records[i] = run_record(result, item.payload, item.index, item)

        async with anyio.create_task_group() as tg:
            for i, item in enumerate(items):
                tg.start_soon(one, i, item)
        return [r for r in records if r is not None]

    async def close(self) -> None:
        """Close the pipeline's nodes (their managers and clients) before the actor is killed, and
        send what the tracer still buffers."""
        await self._pipeline.aclose()
        if self._otel is not None:
            self._otel.shutdown()
