"""Many requests through one manager, at a bounded concurrency, with a failure strategy.

`run_batch(manager, requests, ...)` validates every request first (a `ValueError` naming the id
and the option, before anything is sent), then runs them in request order through the manager's
public `chat()`, at most `max_concurrency` at a time. Each request is one `chat()` call, so it
gets the manager's whole routing, fallback, retries, budget and stats.

Strategies: `"continue"` runs everything; `"stop_on_first"` stops at the first error;
`("stop_on_threshold", rate)` stops once at least min(10, N) requests finished and
failures/finished > rate. A stop cancels the requests in flight at once (their connections close,
their reservations are freed by the manager) into `cancelled`, never `errors`; the requests not
begun are `not_started`. `request_timeout` is each request's `deadline` (→ `DeadlineExceeded`).

`retry_failed(manager, result, **options)` runs again every request without a result and
returns the merged `BatchResult`. The manager's `batch()`/`retry_failed()` delegate here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import anyio

from amaos_llm.budget import money
from amaos_llm.errors import AllModelsFailed, ConfigError, InvalidRequest, LLMError
from amaos_llm.inputs import chat_messages, check_sampling, prompt_messages
from amaos_llm.stats import ModelStats, Stats
from amaos_llm.types import Attempt, LLMResult, Message

Strategy = str | tuple[str, float]


class ChatManager(Protocol):
    async def chat(self, messages: Any, **options: Any) -> LLMResult: ...


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request of a batch: a `prompt` (with an optional `system_prompt`) or `messages`.
    `id` is a unique str; None means its index in the batch."""

    id: str | None = None
    prompt: str | None = None
    messages: Sequence[Message | Mapping[str, Any]] | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    force_model: str | None = None
    max_cost: float | Decimal | None = None


_FIELDS = tuple(f.name for f in dataclasses.fields(BatchRequest))


@dataclass(frozen=True, slots=True)
class _Job:
    """A validated request: what `chat()` gets."""

    id: str
    messages: list[Message]
    options: dict[str, Any]


@dataclass
class BatchResult:
    """What a batch did, in request order."""

    results: dict[str, LLMResult]
    errors: dict[str, LLMError]
    cancelled: tuple[str, ...]
    not_started: tuple[str, ...]
    requests: tuple[BatchRequest, ...]  # as given, ids filled in
    wall_time: float
    by_model: dict[str, ModelStats]
    latencies: dict[str, float] = field(default_factory=dict)  # each finished request's chat() time

    @property
    def success_rate(self) -> float:
        return len(self.results) / len(self.requests) if self.requests else 1.0

    @property
    def total_cost(self) -> Decimal:
        """Every paid attempt, answered or not (unknown prices count as 0)."""
        return sum((m.cost for m in self.by_model.values()), Decimal(0))

    @property
    def total_tokens(self) -> int:
        return sum(m.input_tokens + m.output_tokens for m in self.by_model.values())

    @property
    def avg_latency(self) -> float:
        """Mean `chat()` time of the requests that finished (answered or failed)."""
        return sum(self.latencies.values()) / len(self.latencies) if self.latencies else 0.0

    @property
    def p95_latency(self) -> float:
        """Nearest-rank 95th percentile of the same."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies.values())
        return ordered[math.ceil(0.95 * len(ordered)) - 1]


# --- validation: everything is checked before the first send ---------------------------------

def _check_options(max_concurrency: Any, failure_strategy: Any, request_timeout: Any) -> float | None:
    """The threshold rate of the strategy (None for the others); ValueError naming the option."""
    if type(max_concurrency) is not int or max_concurrency < 1:
        raise ValueError(f"max_concurrency: must be an int >= 1, got {max_concurrency!r}")
    if request_timeout is not None and (type(request_timeout) not in (int, float) or not request_timeout > 0):
        raise ValueError(f"request_timeout: must be a number > 0 or None, got {request_timeout!r}")
    if failure_strategy in ("continue", "stop_on_first"):
        return None
    if (isinstance(failure_strategy, tuple | list) and len(failure_strategy) == 2
            and failure_strategy[0] == "stop_on_threshold"):
        rate = failure_strategy[1]
        if type(rate) not in (int, float) or not 0 <= rate < 1:
            raise ValueError(f"failure_strategy: the stop_on_threshold rate must be in [0, 1), got {rate!r}")
        return float(rate)
    raise ValueError(
        "failure_strategy: must be 'continue', 'stop_on_first' or ('stop_on_threshold', rate), "
        f"got {failure_strategy!r}"
    )


def _requests(requests: Any) -> tuple[BatchRequest, ...]:
    if isinstance(requests, Mapping):
        raise TypeError("requests: a list of BatchRequest or dicts, not a mapping; give ids as BatchRequest(id=...)")
    if isinstance(requests, str | bytes) or not isinstance(requests, Iterable):
        raise TypeError(f"requests: a list of BatchRequest or dicts, got {type(requests).__name__}")
    out: list[BatchRequest] = []
    seen: set[str] = set()
    for index, item in enumerate(requests):
        if isinstance(item, Mapping):
            unknown = sorted(set(item) - set(_FIELDS))
            if unknown:
                raise ValueError(f"request {item.get('id', index)!r}: unknown key {unknown[0]!r}; "
                                 f"known: {', '.join(_FIELDS)}")
            item = BatchRequest(**item)
        elif not isinstance(item, BatchRequest):
            raise TypeError(f"request {index}: a BatchRequest or a dict, got {type(item).__name__}")
        if item.id is None:
            item = dataclasses.replace(item, id=str(index))
        elif type(item.id) is not str:
            raise ValueError(f"request {index}: id must be a str, got {item.id!r}")
        if item.id in seen:
            raise ValueError(f"request {item.id!r}: duplicate id")
        seen.add(item.id)
        out.append(item)
    return tuple(out)


def _job(request: BatchRequest, deadline: float | None) -> _Job:
    rid = request.id
    assert rid is not None
    if (request.prompt is None) == (request.messages is None):
        raise ValueError(f"request {rid!r}: give exactly one of prompt and messages")
    try:
        if request.prompt is not None:
            messages = prompt_messages(request.prompt, request.system_prompt)
        else:
            messages = chat_messages(request.messages)
            if request.system_prompt is not None:
                if type(request.system_prompt) is not str:
                    raise InvalidRequest(f"system_prompt: must be a str or None, got {request.system_prompt!r}")
                messages.insert(0, Message(role="system", content=request.system_prompt))
        check_sampling(request.temperature, request.max_tokens)
        if request.max_cost is not None:
            money(request.max_cost, "max_cost")
    except (InvalidRequest, ConfigError) as exc:
        raise ValueError(f"request {rid!r}: {exc}") from None
    options: dict[str, Any] = {}
    for name in ("temperature", "max_tokens", "force_model", "max_cost"):
        value = getattr(request, name)
        # Only what is set: chat() keeps its own defaults (and `max_cost` reaches chat() only when
        # a request sets it, so batches run on a manager from before the budget wiring).
        if value is not None:
            options[name] = value
    if deadline is not None:
        options["deadline"] = deadline
    return _Job(rid, messages, options)


# --- running ------------------------------------------------------------------------------------

class _Run:
    """The mutable state of one run; workers share it on one event loop (no locks needed)."""

    def __init__(self, jobs: list[_Job], threshold: float | None, stop_on_first: bool) -> None:
        self.jobs = jobs
        self.next = 0
        self.results: dict[str, LLMResult] = {}
        self.errors: dict[str, LLMError] = {}
        self.cancelled: set[str] = set()
        self.latencies: dict[str, float] = {}
        self.threshold, self.stop_on_first = threshold, stop_on_first
        self.min_sample = min(10, len(jobs))
        self.stopped = False

    def should_stop(self) -> bool:
        failed = len(self.errors)
        if self.stop_on_first:
            return True
        if self.threshold is None:
            return False
        finished = failed + len(self.results)
        return finished >= self.min_sample and failed / finished > self.threshold


async def _worker(manager: ChatManager, run: _Run, scope: anyio.CancelScope) -> None:
    jobs = run.jobs
    while run.next < len(jobs) and not run.stopped:
        job = jobs[run.next]
        run.next += 1
        started = time.perf_counter()
        try:
            result = await manager.chat(job.messages, **job.options)
        except anyio.get_cancelled_exc_class():
            run.cancelled.add(job.id)
            raise
        except LLMError as exc:  # the request's failure is its entry in `errors`
            run.errors[job.id] = exc
        else:
            run.results[job.id] = result
        run.latencies[job.id] = time.perf_counter() - started
        # After every finish: a success can complete the threshold's minimum sample.
        if run.errors and run.should_stop():
            run.stopped = True
            scope.cancel()  # the requests in flight end as `cancelled`


async def run_batch(
    manager: ChatManager,
    requests: Iterable[BatchRequest | Mapping[str, Any]],
    *,
    max_concurrency: int = 8,
    failure_strategy: Strategy = "continue",
    request_timeout: float | None = None,
) -> BatchResult:
    """Run `requests` through `manager.chat()`; see the module docstring."""
    threshold = _check_options(max_concurrency, failure_strategy, request_timeout)
    given = _requests(requests)
    jobs = [_job(request, request_timeout) for request in given]
    run = _Run(jobs, threshold, failure_strategy == "stop_on_first")
    started = time.perf_counter()
    # A fixed pool of workers taking requests in order: no task per request, and "not started"
    # is simply what no worker took before a stop.
    async with anyio.create_task_group() as tg:
        for _ in range(min(max_concurrency, len(jobs))):
            tg.start_soon(_worker, manager, run, tg.cancel_scope)
    wall_time = time.perf_counter() - started
    return _result(given, run.results, run.errors, run.cancelled, run.latencies, wall_time)


def _result(
    requests: tuple[BatchRequest, ...], results: Mapping[str, LLMResult], errors: Mapping[str, LLMError],
    cancelled: set[str], latencies: Mapping[str, float], wall_time: float,
    by_model: dict[str, ModelStats] | None = None,
) -> BatchResult:
    ids = [r.id for r in requests if r.id is not None]
    stats = Stats()
    for rid in ids:
        if rid in results:
            _count(stats, results[rid].attempts)
        elif rid in errors and isinstance(errors[rid], AllModelsFailed):
            _count(stats, errors[rid].attempts)  # type: ignore[attr-defined]
    merged = _merge(by_model or {}, stats.by_model)
    return BatchResult(
        results={i: results[i] for i in ids if i in results},
        errors={i: errors[i] for i in ids if i in errors},
        cancelled=tuple(i for i in ids if i in cancelled),
        not_started=tuple(i for i in ids if i not in results and i not in errors and i not in cancelled),
        requests=requests, wall_time=wall_time, by_model=merged,
        latencies={i: latencies[i] for i in ids if i in latencies},
    )


def _count(stats: Stats, attempts: Sequence[Attempt]) -> None:
    for attempt in attempts:
        stats.record_attempt(attempt.model_name, attempt.outcome, attempt.latency)
        if attempt.usage is not None:
            stats.record_usage(attempt.model_name, attempt.usage.input_tokens, attempt.usage.output_tokens,
                               attempt.cost)


def _merge(a: Mapping[str, ModelStats], b: Mapping[str, ModelStats]) -> dict[str, ModelStats]:
    out = {name: dataclasses.replace(stats) for name, stats in a.items()}
    for name, stats in b.items():
        if name not in out:
            out[name] = dataclasses.replace(stats)
            continue
        mine = out[name]
        for f in dataclasses.fields(stats):
            setattr(mine, f.name, getattr(mine, f.name) + getattr(stats, f.name))
    return out


async def retry_failed(manager: ChatManager, batch: BatchResult, **options: Any) -> BatchResult:
    """Run again every request of `batch` without a result (errors, cancelled, not started) with
    `options` (those of `run_batch`); returns the merged result, in the original order."""
    again = [r for r in batch.requests if r.id not in batch.results]
    retried = await run_batch(manager, again, **options)
    results = {**batch.results, **retried.results}
    latencies = {**batch.latencies, **retried.latencies}
    merged = _result(batch.requests, results, retried.errors, set(retried.cancelled), latencies,
                     batch.wall_time + retried.wall_time)
    merged.by_model = _merge(batch.by_model, retried.by_model)
    return merged
