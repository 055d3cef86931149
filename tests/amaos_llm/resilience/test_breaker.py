from amaos_llm.resilience import CircuitBreaker
from tests.support.clock import Clock


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=3, reset_after=10, clock=Clock(0.0))
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and not breaker.is_open()
    breaker.record_failure()
    assert breaker.state == "open" and breaker.is_open()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(threshold=2, reset_after=10, clock=Clock(0.0))
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_half_open_after_reset_lets_exactly_one_probe_through() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker(threshold=1, reset_after=10, clock=clock)
    breaker.record_failure()
    clock.now = 9.9
    assert breaker.is_open()
    clock.now = 10.0
    assert breaker.state == "half_open" and not breaker.is_open()
    breaker.before_call()
    assert breaker.is_open()  # a second caller waits for the probe's verdict


def test_probe_success_closes_and_probe_failure_reopens() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker(threshold=1, reset_after=10, clock=clock)
    breaker.record_failure()
    clock.now = 10
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now = 20
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"


def test_a_failure_rate_opens_once_enough_sends_are_in_and_never_before() -> None:
    breaker = CircuitBreaker(threshold=100, reset_after=10, clock=Clock(0.0), failure_rate=0.5, min_calls=4)
    assert [breaker.record_failure(), breaker.record_success(), breaker.record_failure()] == [False, None, False]
    assert breaker.state == "closed"  # 2 of 3 failed, but fewer than min_calls sends so far
    breaker.record_success()
    assert breaker.record_failure() is True  # the last 4: ok, fail, ok, fail: 50 % failed
    assert breaker.state == "open"


def test_a_failure_rate_below_the_threshold_keeps_it_closed() -> None:
    breaker = CircuitBreaker(threshold=100, reset_after=10, clock=Clock(0.0), failure_rate=0.75, min_calls=4)
    for _ in range(5):  # never 3 failures among any 4 sends in a row
        assert breaker.record_failure() is False
        breaker.record_success()
    assert breaker.state == "closed"


def test_record_failure_says_when_it_opened_and_a_late_failure_while_open_does_not_count() -> None:
    clock = Clock(0.0)
    breaker = CircuitBreaker(threshold=2, reset_after=10, clock=clock)
    assert [breaker.record_failure(), breaker.record_failure(), breaker.record_failure()] == [False, True, False]
    clock.now += 10
    breaker.before_call()  # the probe
    assert breaker.record_failure() is True  # a failed probe re-opens, for a full reset_after
    assert breaker.reopens_in() == 10
