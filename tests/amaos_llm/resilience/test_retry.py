from amaos_llm import AuthenticationError, ProviderTimeout, RateLimitError, ServerError
from amaos_llm.resilience import RetryPolicy


def test_retryable_errors_back_off_exponentially_up_to_max_retries() -> None:
    policy = RetryPolicy(max_retries=3, backoff=0.5)
    error = ServerError("500")
    assert [policy.delay(error, n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, None]


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    assert RetryPolicy(backoff=0.5).delay(RateLimitError("429", retry_after=3), 1) == 3


def test_retry_after_beyond_max_wait_falls_back_instead() -> None:
    assert RetryPolicy(max_wait=10).delay(RateLimitError("429", retry_after=60), 1) is None


def test_auth_errors_and_timeouts_are_not_retried() -> None:
    policy = RetryPolicy(max_retries=5)
    assert policy.delay(AuthenticationError("401"), 1) is None
    assert policy.delay(ProviderTimeout("slow"), 1) is None
