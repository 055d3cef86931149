from amaos_llm.resilience import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=3, reset_after=10, clock=Clock())
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and not breaker.is_open()
    breaker.record_failure()
    assert breaker.state == "open" and breaker.is_open()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(threshold=2, reset_after=10, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_half_open_after_reset_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_after=10, clock=clock)
    breaker.record_failure()
    clock.now = 9.9
    assert breaker.is_open()
    clock.now = 10.0
    assert breaker.state == "half_open" and not breaker.is_open()
    breaker.before_call()
    assert breaker.is_open()  # a second caller waits for the probe's verdict


def test_probe_success_closes_and_probe_failure_reopens() -> None:
    clock = Clock()
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
