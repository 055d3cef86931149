"""Retries by the failure's kind with a capped, jittered backoff; a whole-call deadline; breakers that
only count failures that say a model is unwell. Waits go through an injected sleep: no test sleeps
more than a few hundred milliseconds for real."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from amaos_llm import (
    AllModelsFailed,
    BadRequestError,
    ConfigError,
    DeadlineExceeded,
    InvalidRequest,
    LLMConfig,
    LLMManager,
    Message,
    RateLimitError,
    ServerError,
)
from tests.support.clock import Clock

pytestmark = pytest.mark.anyio


class Waits:
    """An injected sleep that records what the manager asked for and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def scripted(*outcomes: Exception | str) -> Any:
    """A model that raises or answers as scripted, one outcome per call (the last one repeats)."""
    runs: list[int] = []

    async def fn(messages: list[Message], **params: Any) -> str:
        outcome = outcomes[min(len(runs), len(outcomes) - 1)]
        runs.append(1)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome == "hang":
            await anyio.sleep(5)
        return outcome

    fn.runs = runs  # type: ignore[attr-defined]
    return fn


def manager(defaults: dict[str, Any] | None = None, routing: dict[str, Any] | None = None, **kw: Any) -> LLMManager:
    config = LLMConfig.model_validate({"defaults": defaults or {}, "routing": routing or {}})
    return LLMManager(config, **kw)


# -- backoff ------------------------------------------------------------------------------------


async def test_per_model_retry_settings_win_over_the_defaults() -> None:
    waits = Waits()
    m = manager({"max_retries": 0, "retry_backoff": 5}, sleep=waits)
    fn = scripted(ServerError("503"), ServerError("503"), ServerError("503"), "ok")
    m.register_model("a", fn, max_retries=3, retry_backoff=0.1, backoff_multiplier=3, retry_jitter=0)
    result = await m.complete("hi")
    assert result.content == "ok"
    assert waits.asked == pytest.approx([0.1, 0.3, 0.9])
    assert m.get_stats()["retries"] == 3


def test_the_same_random_seed_gives_the_same_jittered_waits() -> None:
    def waits_for(**kw: Any) -> list[float]:
        waits = Waits()
        m = manager({"max_retries": 3, "retry_backoff": 1, "retry_jitter": 0.5}, sleep=waits, **kw)
        m.register_model("a", scripted(ServerError("500")))
        with pytest.raises(AllModelsFailed):
            anyio.run(m.complete, "hi")
        return waits.asked

    seeded = waits_for(routing={"random_seed": 3})
    assert seeded == waits_for(routing={"random_seed": 3}) == waits_for(rng=random.Random(3))
    assert seeded != waits_for(routing={"random_seed": 4})
    assert all(0.5 <= w / base <= 1 for w, base in zip(seeded, (1, 2, 4)))


async def test_a_retry_after_longer_than_max_retry_wait_moves_on_at_once() -> None:
    waits = Waits()
    m = manager({"max_retries": 2, "max_retry_wait": 10}, sleep=waits)
    m.register_model("busy", scripted(RateLimitError("429", retry_after=60)), priority=1)
    m.register_model("backup", scripted("from backup"))
    result = await m.complete("hi")
    assert (result.content, waits.asked) == ("from backup", [])


# -- breakers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [BadRequestError("400: bad field"), RateLimitError("429")])
async def test_a_400_or_a_429_never_opens_the_breaker(error: Exception) -> None:
    m = manager({"breaker_threshold": 1, "max_retries": 0})
    fn = scripted(error, "recovered")
    m.register_model("a", fn)
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")
    result = await m.complete("hi")  # not skipped: the model is not unwell
    assert (result.content, len(fn.runs)) == ("recovered", 2)


async def test_a_per_model_breaker_threshold_wins_over_the_default() -> None:
    m = manager({"breaker_threshold": 5, "max_retries": 0, "breaker_reset": 60})
    fn = scripted(ServerError("500"), "never reached")
    m.register_model("a", fn, breaker_threshold=1)
    for _ in range(2):
        with pytest.raises(AllModelsFailed) as info:
            await m.complete("hi")
    assert info.value.attempts[0].outcome == "skipped" and len(fn.runs) == 1


# -- deadline -----------------------------------------------------------------------------------


async def test_a_deadline_cuts_the_call_and_is_no_breaker_failure() -> None:
    m = manager({"breaker_threshold": 1})
    fn = scripted("hang", "quick")
    m.register_model("slow", fn, timeout=30)
    start = time.perf_counter()
    with pytest.raises(DeadlineExceeded) as info:
        await m.complete("hi", deadline=0.1)
    took = time.perf_counter() - start
    assert 0.09 < took < 0.5
    assert [(a.model_name, a.outcome, a.error) for a in info.value.attempts] == [("slow", "timeout", "deadline")]
    assert isinstance(info.value, AllModelsFailed) and str(info.value).startswith("deadline exceeded:")
    stats = m.get_stats()
    assert (stats["failures"], stats["deadline_exceeded"], stats["by_model"]["slow"]["timeouts"]) == (1, 1, 1)
    assert (await m.complete("hi")).content == "quick"  # the breaker did not open


async def test_the_default_deadline_applies_and_a_call_overrides_it() -> None:
    m = manager({"deadline": 0.05})
    m.register_model("slow", scripted("hang"), timeout=30)
    with pytest.raises(DeadlineExceeded):
        await m.complete("hi")
    with anyio.move_on_after(0.3) as scope:
        await m.complete("hi", deadline=10)
    assert scope.cancelled_caught  # still waiting at 0.3 s: the call's own deadline won


async def test_no_retry_is_made_that_could_not_finish_before_the_deadline() -> None:
    waits = Waits()
    m = manager({"max_retries": 3, "max_retry_wait": 30}, sleep=waits)
    m.register_model("busy", scripted(RateLimitError("429", retry_after=20)), priority=1)
    m.register_model("backup", scripted("from backup"))
    result = await m.complete("hi", deadline=5)
    assert (result.content, waits.asked) == ("from backup", [])


@pytest.mark.parametrize("deadline", [0, -1, "soon"])
async def test_a_deadline_must_be_positive_seconds(deadline: Any) -> None:
    m = manager()
    m.register_model("a", scripted("ok"))
    with pytest.raises(InvalidRequest, match="deadline: must be a number of seconds > 0"):
        await m.complete("hi", deadline=deadline)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("defaults: {backoff_multiplier: 0.5}", "defaults.backoff_multiplier"),
        ("defaults: {retry_jitter: 1.5}", "defaults.retry_jitter"),
        ("defaults: {deadline: 0}", "defaults.deadline"),
        ("models: [{name: a, provider: callable, retry_jitter: -0.1}]", "models[0].retry_jitter"),
        ("models: [{name: a, provider: callable, deadline: 3}]", "models[0].deadline"),
    ],
)
def test_resilience_settings_out_of_range_name_their_field(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        LLMConfig.from_yaml(path)
    assert (info.value.line, info.value.field) == (1, field)


# -- Retry-After windows and the final wait --------------------------------------------------------


def test_a_window_is_extended_by_a_longer_ask_and_never_shortened() -> None:
    from amaos_llm.resilience import RetryAfterWindow

    clock = Clock()
    window = RetryAfterWindow(clock)
    window.open(10)
    window.open(3)
    assert window.remaining() == 10
    clock.now += 4
    window.open(20)
    assert window.remaining() == 20


async def test_a_retry_after_keeps_other_calls_away_until_it_passes() -> None:
    clock = Clock()
    m = manager({"max_retries": 0}, clock=clock, sleep=clock.sleep)
    busy = scripted(RateLimitError("429", retry_after=30), "busy again")
    m.register_model("busy", busy, priority=1)
    m.register_model("backup", scripted("from backup"))
    assert (await m.complete("hi")).content == "from backup"
    clock.now += 5
    second = await m.complete("hi")
    assert (second.content, second.attempts[0].outcome, second.attempts[0].error) == (
        "from backup", "skipped", "rate limited: the server asked to wait 25.0 s more")
    clock.now += 25
    assert (await m.complete("hi")).content == "busy again"
    assert len(busy.runs) == 2


async def test_when_every_model_is_down_the_call_waits_for_the_first_to_come_back() -> None:
    clock = Clock()
    m = manager({"max_retries": 0, "breaker_threshold": 1, "breaker_reset": 2, "max_retry_wait": 10},
                clock=clock, sleep=clock.sleep)
    m.register_model("only", scripted(ServerError("500"), "back again"))
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")  # opens the breaker
    clock.now += 0.5
    result = await m.complete("hi")
    assert result.content == "back again" and clock.slept == [1.5]
    assert [a.outcome for a in result.attempts] == ["skipped", "success"]


@pytest.mark.parametrize(("defaults", "deadline"), [({"max_retry_wait": 1}, None), ({}, 1.0)])
async def test_the_final_wait_stays_within_max_retry_wait_and_the_deadline(
    defaults: dict[str, Any], deadline: float | None
) -> None:
    clock = Clock()
    m = manager({"max_retries": 0, "breaker_threshold": 1, "breaker_reset": 2, **defaults},
                clock=clock, sleep=clock.sleep)
    m.register_model("only", scripted(ServerError("500"), "back again"))
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")
    with pytest.raises(AllModelsFailed, match="no eligible model"):
        await m.complete("hi", deadline=deadline)
    assert clock.slept == []


async def test_no_retry_goes_to_a_model_whose_breaker_opened_meanwhile() -> None:
    waits = Waits()
    m = manager({"max_retries": 3, "breaker_threshold": 1, "breaker_reset": 60}, sleep=waits)
    fn = scripted(ServerError("500"))
    m.register_model("a", fn)
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")
    assert (len(fn.runs), waits.asked) == (1, [])


def test_a_breaker_says_when_it_lets_a_probe_through() -> None:
    from amaos_llm.resilience import CircuitBreaker

    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_after=30, clock=clock)
    assert breaker.reopens_in() == 0.0
    breaker.record_failure()
    clock.now += 10
    assert breaker.reopens_in() == 20
    clock.now += 20
    breaker.before_call()  # the probe is out: its outcome decides, not the clock
    assert breaker.reopens_in() is None


async def test_five_concurrent_calls_on_a_half_open_model_send_one_probe() -> None:
    clock = Clock()
    m = manager({"max_retries": 0, "breaker_threshold": 1, "breaker_reset": 5}, clock=clock, sleep=clock.sleep)
    release = anyio.Event()
    runs: list[int] = []

    async def flaky(messages: list[Message], **params: Any) -> str:
        runs.append(1)
        if len(runs) == 1:
            raise ServerError("500")
        await release.wait()
        return "probe answered"

    m.register_model("flaky", flaky, priority=1)
    m.register_model("backup", scripted("from backup"))
    await m.complete("hi")  # opens flaky's breaker
    clock.now += 5
    answers: list[str] = []

    async def ask() -> None:
        answers.append((await m.complete("hi")).content)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert len(runs) == 2  # the first failure, then one probe
    assert sorted(answers) == ["from backup"] * 4 + ["probe answered"]
    stats = m.get_stats()["by_model"]["flaky"]
    assert (stats["breaker_opens"], stats["skipped"]) == (1, 4)


async def test_a_failure_rate_from_the_config_opens_the_breaker() -> None:
    m = manager({"max_retries": 0, "breaker_threshold": 100, "breaker_failure_rate": 0.5, "breaker_min_calls": 4})
    fn = scripted(ServerError("500"), "ok", ServerError("500"), "ok", ServerError("500"), "ok")
    m.register_model("a", fn)
    outcomes = []
    for _ in range(6):
        try:
            outcomes.append((await m.complete("hi")).content)
        except AllModelsFailed as exc:
            outcomes.append(exc.attempts[0].outcome)
    assert outcomes == ["error", "ok", "error", "ok", "error", "skipped"]
    assert m.get_stats()["by_model"]["a"]["breaker_opens"] == 1
