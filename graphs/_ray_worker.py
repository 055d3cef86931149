"""The actors of a Ray job (`graphs.executors.RayExecutor`): workers, each holding ONE pipeline, and
the job's journal of finished runs.

A worker loads the pipeline once, when it starts, with its nodes and managers; every batch sent to
it then runs on it, `concurrency` runs at a time across all the batches it holds (the driver keeps
two in flight per worker so that it never waits between batches). A batch comes back as its
records, in the batch's order; the driver alone writes them.

Ray re-runs the batches of a worker that died on the restarted worker, and a re-run must not call
the models again for the runs the dead worker had finished: they were paid for, and their spending
settled in the managers' budgets. So a worker journals each run's record as it finishes, in the
`RunJournal` actor, before the batch returns; a batch first takes from the journal the records of
its runs that are there and runs only the others. The journal keys records by line number, which
is unique within a job, and the driver drops a batch's records once it has them, so the journal
holds the batches in flight only. What is not covered: a run in flight when its worker dies runs
again, and if its model had answered (it may have) that call is paid twice.

This module does not import Ray: `RayExecutor` wraps the classes with `ray.remote` when a job
starts, so that `import graphs` never loads Ray.
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


class RunJournal:
    """The job's finished runs, by line number: an actor apart from the workers, so that it outlives
    any of them. A plain (not async) actor: Ray runs its calls one at a time, each whole."""

    def __init__(self) -> None:
        self._records: dict[int, dict[str, Any]] = {}

    def put(self, records: dict[int, dict[str, Any]]) -> None:
        self._records.update(records)

    def finished(self, lines: list[int]) -> dict[int, dict[str, Any]]:
        """The records journaled for these lines (a batch that runs again after its worker died)."""
        return {line: self._records[line] for line in lines if line in self._records}

    def forget(self, lines: list[int]) -> None:
        """The driver has these lines' records: they will not be asked for again."""
        for line in lines:
            self._records.pop(line, None)

    def size(self) -> int:
        return len(self._records)


class _JournalWriter:
    """A worker's side of the journal: one call out at a time, each carrying every record that
    finished while the one before it was out (a group commit), so a wide batch makes few calls."""

    def __init__(self, journal: Any) -> None:
        self._journal = journal
        self._waiting: dict[int, dict[str, Any]] = {}
        self._lock: anyio.Lock | None = None  # made in the actor's event loop, at the first record

    async def put(self, line: int, record: dict[str, Any]) -> None:
        """Returns once the record is in the journal."""
        if self._lock is None:
            self._lock = anyio.Lock()
        self._waiting[line] = record
        async with self._lock:
            if line not in self._waiting:
                return  # the call that held the lock carried it
            records, self._waiting = self._waiting, {}
            await self._journal.put.remote(records)


class PipelineWorker:
    """A worker actor's class. `env` holds the API keys the pipeline's models name: they travel as
    the actor's creation arguments (in memory), not in a `runtime_env`, whose values Ray's
    runtime-env agent writes to its log file. `journal`: the name of the job's `RunJournal` actor
    (a name, not its handle: Ray keeps a handle argument in its object store, from where a restart
    could fail to read it)."""

    def __init__(self, source: PipelineSource, concurrency: int, env: Mapping[str, str],
                 trace: Mapping[str, str] | None = None, journal: str | None = None) -> None:
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
        self._journal: Any = None
        self._journal_writer: _JournalWriter | None = None
        if journal is not None:
            import ray  # in a Ray actor, so already imported

            self._journal = ray.get_actor(journal)
            self._journal_writer = _JournalWriter(self._journal)

    async def ready(self) -> int:
        """Awaited by the driver before it sends batches: the actor started and loaded the pipeline."""
        await self._pipeline.initialize()
        return os.getpid()

    async def run(self, items: list[BatchItem]) -> list[dict[str, Any]]:
        """The records of a batch's runs, in the batch's order: those journaled already (the batch
        ran before, on a worker that died), and those of the other items, run now and journaled."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._concurrency)
        limiter, orchestrator, writer = self._limiter, self._pipeline.orchestrator, self._journal_writer
        journaled: dict[int, dict[str, Any]] = {}
        if self._journal is not None:
            journaled = await self._journal.finished.remote([item.line for item in items])
        records: list[dict[str, Any] | None] = [journaled.get(item.line) for item in items]

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
            record = run_record(result, item.payload, item.index, item)
            if writer is not None:
                await writer.put(item.line, record)
            records[i] = record

        async with anyio.create_task_group() as tg:
            for i, item in enumerate(items):
                if records[i] is None:
                    tg.start_soon(one, i, item)
        return [r for r in records if r is not None]

    async def close(self) -> None:
        """Close the pipeline's nodes (their managers and clients) before the actor is killed, and
        send what the tracer still buffers."""
        await self._pipeline.aclose()
        if self._otel is not None:
            self._otel.shutdown()
