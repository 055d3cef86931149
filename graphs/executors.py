"""Where a batch's runs happen: in this process (`LocalExecutor`) or on a Ray cluster (`RayExecutor`).

An executor turns a stream of input lines (`BatchItem`, or `BadInput` for a line that is not an
input) into `(entry, record)` pairs, one per entry, in input order (`ordered`) or as they finish.
It writes nothing: the caller (`graphs.batch_run.run_batch`, the CLI's `run --inputs`) is the only
writer, which is what makes `--resume` and "each input exactly once" hold whichever executor runs.

    async with LocalExecutor(concurrency=16).records(pipeline, entries) as finished:
        async for entry, record in finished:
            ...

`RayExecutor` sends the entries to an actor pool in batches; see its docstring for the guarantees.
Ray is imported only when a `RayExecutor` starts, never by `import graphs`.
"""

from __future__ import annotations

import ipaddress
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from amaos_llm import Budget
from graphs.batch import BadInput, BatchItem, bad_input_record, parse_item, run_record
from graphs.errors import GraphError, RunFailed
from graphs.pipeline import Pipeline
from graphs.results import RunResult
from graphs.streaming import map_stream

Entry = BatchItem | BadInput
Finished = tuple[Entry, dict[str, Any]]  # an entry and the one record written for it

INSTALL_HINT = "pip install -e '.[ray]'"


class ExecutorError(GraphError):
    """An executor cannot start or carry on: Ray missing, workers that cannot be placed, a pipeline
    that cannot be shared between workers."""


class Executor(ABC):
    """Runs a pipeline once per entry; hands back exactly one record per entry."""

    @abstractmethod
    def records(
        self, pipeline: Pipeline, entries: Iterable[Entry], *, ordered: bool = True
    ) -> AbstractAsyncContextManager[AsyncIterator[Finished]]:
        """`async with executor.records(pipeline, entries) as finished: async for entry, record in finished`.

        `entries` is read lazily; an exception it raises (a bad line under `--on-bad-input stop`)
        comes out of the iteration after the records of every entry before it."""

    def check(self, pipeline: Pipeline) -> None:
        """Raise `ExecutorError` if this executor cannot run `pipeline`, before anything is opened or
        written (the default: it can)."""

    async def run_many(self, pipeline: Pipeline, inputs: Iterable[Any]) -> list[dict[str, Any]]:
        """The records of one run per input (a prompt string or an input object, as a JSONL line
        holds), in input order. Each input's `id` is its `id` field, else its position from 1."""
        entries = (parse_item(value, "<input>", line) for line, value in enumerate(inputs, start=1))
        async with self.records(pipeline, entries) as finished:
            return [record async for _, record in finished]


@dataclass
class LocalExecutor(Executor):
    """The runs in this process, `concurrency` at a time, on the pipeline as it is given.
    `ledger`: a budget every run spends from too (`run --budget`); `on_result` sees each run's
    `RunResult` as it finishes (the CLI's cost tables)."""

    concurrency: int = 16
    ledger: Budget | None = None
    on_result: Callable[[RunResult], None] | None = None

    @asynccontextmanager
    async def records(
        self, pipeline: Pipeline, entries: Iterable[Entry], *, ordered: bool = True
    ) -> AsyncIterator[AsyncIterator[Finished]]:
        orchestrator = pipeline.orchestrator

        async def one(entry: Entry) -> Finished:
            if isinstance(entry, BadInput):
                return entry, bad_input_record(entry)
            try:
                result = await orchestrator.run(entry.payload, metadata=entry.metadata, budget_usd=self.ledger)
            except RunFailed as exc:  # a fail_fast pipeline: its partial result is the record
                result = exc.result
            if self.on_result is not None:
                self.on_result(result)
            return entry, run_record(result, entry.payload, entry.index, entry)

        async with pipeline, map_stream(entries, one, self.concurrency, ordered=ordered) as runs:
            yield (finished async for _, finished in runs)


def _shared_state_required(pipeline: Pipeline) -> str | None:
    """Why `pipeline` cannot run on several workers with process-local state, or None.

    A manager's budget or a model's rpm/tpm held in each worker's memory would let every worker
    spend the whole budget (N × the limit), the very bug budgets exist to avoid. Run and node
    budgets (`settings.budget_usd`, a node's `budget_usd`) are per run, and a run stays in one
    worker: they need nothing shared."""
    for node_id, config, budget_usd in _model_configs(pipeline):
        if config.state.backend != "memory":
            continue
        if budget_usd is not None:
            return f"node {node_id!r}: its manager's budget ${budget_usd} needs `state: {{backend: redis}}`"
        limited = next((m.name for m in config.models if m.enabled and (m.rpm or m.tpm)), None)
        if limited is not None:
            return f"node {node_id!r}: model {limited!r}'s rpm/tpm limits need `state: {{backend: redis}}`"
    return None


def _model_configs(pipeline: Pipeline) -> Iterator[tuple[str, Any, Any]]:
    """Each `llm_manager` node's model configuration, and its manager's budget (a shared
    `managers:` entry's `budget_usd` wins over the file's)."""
    from amaos_llm import LLMConfig
    from nodes.llm import LLMManagerNode

    for node in pipeline.orchestrator.nodes.values():
        if not isinstance(node, LLMManagerNode):
            continue
        entry = pipeline.manager_specs.get(node.config.manager) if node.config.manager is not None else None
        path = entry.config_path if entry is not None else node.config.config_path
        config = LLMConfig.from_yaml(path) if path is not None else LLMConfig.default()
        budget = entry.budget_usd if entry is not None and entry.budget_usd is not None else config.budget_usd
        yield node.id, config, budget


def _key_env_names(pipeline: Pipeline) -> list[str]:
    """The environment variables that hold the API keys of the models the pipeline's managers use
    (`api_key_env` of each), and `AMAOS_LLM_CONFIG`, which picks the config file of a manager
    given none."""
    from amaos_llm.config import CONFIG_ENV

    names = [CONFIG_ENV]
    for _, config, _ in _model_configs(pipeline):
        for spec in config.models:
            names.extend(spec.key_envs)
    return list(dict.fromkeys(names))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _is_loopback(address: str | None) -> bool:
    if address is None:
        return True  # a local Ray, started by this command
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Pool:
    """The actors, each with the number of batches it holds; a batch goes to the least busy."""

    actors: list[Any]
    busy: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.busy = [0] * len(self.actors)

    def take(self) -> int:
        i = min(range(len(self.busy)), key=self.busy.__getitem__)
        self.busy[i] += 1
        return i

    def give_back(self, i: int) -> None:
        self.busy[i] -= 1


@dataclass
class RayExecutor(Executor):
    """The runs on a Ray cluster: `workers` actors, each holding one copy of the pipeline (loaded
    once per actor from its YAML file, with its managers) and running `concurrency` inputs at a time.

    - `address`: join that cluster (`ray start --head` elsewhere); None starts a local Ray, kept on
      127.0.0.1, that stops with the job. A Ray this process already joined (`ray.init()` before) is
      used as it is and left running.
    - The driver reads the inputs (so line numbers, `--on-bad-input` and `--resume` mean exactly what
      they mean locally) and sends them in batches of `batch_size`, two in flight per worker. Each
      batch comes back once, as its records; only the driver writes. An actor that dies is restarted
      and its batches re-run (`max_restarts`), and the driver still receives their records once.
    - A re-run batch does not run again what the dead actor finished: each run's record goes to the
      job's journal (a `RunJournal` actor) as it finishes, and a batch takes from it the records
      already there (see `graphs._ray_worker`). A finished run is paid, and settled in the budgets,
      once; a run in flight when its actor died runs again.
    - The API keys the pipeline's models name (`api_key_env`) go from the driver's environment to
      the workers' in memory, as actor arguments: never to a file or a log.
    - `num_cpus` per worker is fractional: the runs wait on the network, not the CPU, and a 2-core
      machine can then hold more workers than cores.
    """

    address: str | None = None
    workers: int = 1
    batch_size: int = 64
    concurrency: int = 16
    num_cpus: float = 0.5
    max_restarts: int = 2
    start_timeout: float = 120.0  # seconds for every worker to be placed and to load the pipeline
    local_only: bool | None = None  # the overrides the driver loaded the pipeline with
    config_path: str | None = None
    actor_names: list[str] = field(default_factory=list, init=False)  # the running job's actors (tests kill one)
    journal_name: str | None = field(default=None, init=False)  # the running job's `RunJournal` actor
    _started_ray: bool = field(default=False, init=False, repr=False)  # this job's ray.init, undone at its end

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def check(self, pipeline: Pipeline) -> None:
        if pipeline.path is None:
            raise ExecutorError("the Ray executor runs pipelines loaded from a YAML file: each worker loads it")
        if self.workers > 1 and (why := _shared_state_required(pipeline)) is not None:
            raise ExecutorError(f"{self.workers} workers cannot share this pipeline's state: {why}")
        if _is_loopback(self.address):
            # Ray binds every port on the host's network address unless told it runs no cluster beyond
            # this machine; read when Ray is imported and inherited by the processes it starts.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        _import_ray()

    @asynccontextmanager
    async def records(
        self, pipeline: Pipeline, entries: Iterable[Entry], *, ordered: bool = True
    ) -> AsyncIterator[AsyncIterator[Finished]]:
        self.check(pipeline)
        env = {name: os.environ[name] for name in _key_env_names(pipeline) if name in os.environ}
        job_span, trace = _trace_job(pipeline)
        if trace is not None:  # the workers export too, to the same collector, as children of the job's span
            env.update({k: v for k, v in os.environ.items() if k.startswith("OTEL_")})
        ray = self._connect()
        actors: list[Any] = []
        journal: Any = None
        try:
            journal = self._start_journal(ray)
            await journal.size.remote()  # started: the workers look it up by its name
            actors = self._start_actors(ray, pipeline, env, trace)
            await self._wait_ready(actors)
            pool = _Pool(actors)

            async def one(batch: list[Entry]) -> list[Finished] | ExecutorError:
                items = [e for e in batch if isinstance(e, BatchItem)]
                i = pool.take()
                try:
                    # An ObjectRef is awaitable on the asyncio loop the CLI runs; cancelling the await
                    # (Ctrl-C) leaves the batch to the actors, which are killed below.
                    records = await actors[i].run.remote(items) if items else []
                except ray.exceptions.RayError as exc:  # restarted too often, or a bug raised in the worker
                    # Returned, not raised: raised in its turn, after the records of the batches before it.
                    return ExecutorError(f"a Ray worker failed on lines {batch[0].line}-{batch[-1].line}: "
                                         f"{_first_line(exc)}; the records before them are written: run "
                                         "again with --resume")
                finally:
                    pool.give_back(i)
                if items:  # the driver has their records: the journal need not keep them
                    journal.forget.remote([item.line for item in items])
                return _merge(batch, records)

            async def each(runs: AsyncIterator[tuple[int, list[Finished] | ExecutorError]]) -> AsyncIterator[Finished]:
                async for _, batch in runs:
                    if isinstance(batch, ExecutorError):
                        raise batch
                    for finished in batch:
                        yield finished

            in_flight = 2 * self.workers
            async with map_stream(_batches(entries, self.batch_size), one, in_flight, ordered=ordered) as runs:
                yield each(runs)
            with anyio.move_on_after(10):  # a clean end: close the managers; killed below regardless
                for actor in actors:
                    await actor.close.remote()
        finally:
            for actor in [*actors, *([journal] if journal is not None else [])]:
                ray.kill(actor, no_restart=True)
            self.actor_names, self.journal_name = [], None
            if self._started_ray:
                ray.shutdown()
            if job_span is not None:
                job_span.end()

    # -- starting -------------------------------------------------------------------------------

    def _connect(self) -> Any:
        ray = _import_ray()
        self._started_ray = False
        if ray.is_initialized():
            return ray
        import logging

        # A job's code travels with it (Ray accepts local directories only for the whole job, here);
        # a Ray the caller joined already runs with the caller's runtime_env.
        common = {"runtime_env": _code_runtime_env(), "logging_level": logging.WARNING, "configure_logging": False}
        if self.address is None:
            ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **common)
        else:
            ray.init(address=self.address, **common)  # shutdown() then only disconnects this driver
        self._started_ray = True
        return ray

    def _prefix(self) -> str:
        return f"amaos-{os.getpid()}-{id(self):x}"

    def _start_journal(self, ray: Any) -> Any:
        """The job's `RunJournal`. It takes no CPU (a dict in memory); restarted, it is empty, and
        the batches then in flight run whole again, as they would without it."""
        from graphs._ray_worker import RunJournal

        self.journal_name = f"{self._prefix()}-journal"
        return ray.remote(RunJournal).options(name=self.journal_name, num_cpus=0, max_restarts=self.max_restarts,
                                              max_task_retries=self.max_restarts).remote()

    def _start_actors(self, ray: Any, pipeline: Pipeline, env: dict[str, str],
                      trace: dict[str, str] | None = None) -> list[Any]:
        from graphs._ray_worker import PipelineSource, PipelineWorker

        assert pipeline.path is not None
        source = PipelineSource(str(pipeline.path.resolve()), self.local_only, self.config_path)
        worker = ray.remote(PipelineWorker)
        options = {"num_cpus": self.num_cpus, "max_restarts": self.max_restarts,
                   "max_task_retries": self.max_restarts}
        actors = []
        for i in range(self.workers):
            name = f"{self._prefix()}-{i}"
            actors.append(worker.options(name=name, **options).remote(source, self.concurrency, env, trace,
                                                                      self.journal_name))
            self.actor_names.append(name)
        return actors

    async def _wait_ready(self, actors: list[Any]) -> None:
        ray = _import_ray()
        refs = [actor.ready.remote() for actor in actors]
        with anyio.move_on_after(self.start_timeout) as scope:
            for ref in refs:
                try:
                    await ref
                except ray.exceptions.RayActorError as exc:
                    raise ExecutorError(f"a Ray worker could not start: {_first_line(exc)}") from None
        if scope.cancelled_caught:
            cpus = ray.available_resources().get("CPU", 0)
            raise ExecutorError(f"{len(actors)} Ray workers could not all start within {self.start_timeout:g}s: "
                                f"each asks for {self.num_cpus:g} CPU and the cluster has {cpus:g} free")


def _trace_job(pipeline: Pipeline) -> tuple[Any, dict[str, str] | None]:
    """With tracing set up in the driver (`--otel`): a `ray job {pipeline}` span and its context as
    W3C headers, for the workers' run spans to nest under; else (None, None)."""
    import sys

    if "opentelemetry.trace" not in sys.modules:  # nobody set up tracing: nothing to propagate
        return None, None
    from opentelemetry import propagate, trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None, None
    span = provider.get_tracer("graphs").start_span(f"ray job {pipeline.name}", attributes={
        "amaos.pipeline": pipeline.name or ""})
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier


def _code_runtime_env() -> dict[str, Any]:
    """The workers import the driver's own `amaos_llm`, `nodes` and `graphs` (a checkout or an
    install), not whatever copy the cluster's Python finds first: Ray ships them as `py_modules`.
    Their dependencies (pydantic, the SDKs...) must be installed on the cluster."""
    import amaos_llm
    import graphs
    import nodes

    modules = [os.path.dirname(m.__file__ or "") for m in (amaos_llm, nodes, graphs)]
    return {"py_modules": modules, "excludes": ["__pycache__", "*.pyc"]}


def _batches(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    """`entries` in lists of `size`. An exception from `entries` (a bad line under `stop`) comes
    after the batch holding the entries before it, so that their records are still written."""
    batch: list[Entry] = []
    it = iter(entries)
    while True:
        try:
            entry = next(it)
        except StopIteration:
            break
        except Exception:  # re-raised, after the batch before it has gone out (its records are written)
            if batch:
                yield batch
            raise
        batch.append(entry)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _merge(batch: list[Entry], records: list[dict[str, Any]]) -> list[Finished]:
    """The batch's entries with their records: the workers' for runs, the driver's for bad lines.
    A worker answers a batch with exactly its runs, in order; anything else is a bug, raised
    rather than written (a record must never land under another input's id)."""
    runs = iter(records)
    out: list[Finished] = []
    for entry in batch:
        if isinstance(entry, BadInput):
            out.append((entry, bad_input_record(entry)))
            continue
        record = next(runs, None)
        if record is None or record.get("line") != entry.line or record.get("id") != entry.record_id:
            raise ExecutorError(f"a worker answered line {entry.line} with another input's record")
        out.append((entry, record))
    if next(runs, None) is not None:
        raise ExecutorError("a worker answered a batch with more records than inputs")
    return out


def _first_line(exc: BaseException) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
