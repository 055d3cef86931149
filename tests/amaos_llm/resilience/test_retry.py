import random

import pytest

from amaos_llm import (
    AuthenticationError,
    BadRequestError,
    ModelLoadError,
    ProviderConnectionError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)
from amaos_llm.resilience import RetryPolicy


def test_the_backoff_grows_by_the_multiplier_up_to_max_retries() -> None:
    policy = RetryPolicy(max_retries=3, backoff=0.5, multiplier=3, jitter=0)
    assert [policy.delay(ServerError("500"), n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, None]


def test_max_retry_wait_caps_the_backoff_instead_of_ending_the_retries() -> None:
    policy = RetryPolicy(max_retries=5, backoff=1, multiplier=10, max_wait=7, jitter=0)
    assert [policy.delay(ServerError("500"), n) for n in (1, 2, 3)] == [1, 7, 7]


def test_jitter_shortens_each_wait_by_up_to_its_share_drawn_from_the_rng() -> None:
    policy = RetryPolicy(backoff=2.0, jitter=0.25)
    draws = random.Random(7)
    expected = 2.0 * (1 - 0.25 * random.Random(7).random())
    assert policy.delay(ServerError("500"), 1, draws) == expected
    waits = [policy.delay(ServerError("500"), 1, random.Random(seed)) for seed in range(200)]
    assert all(1.5 < w <= 2.0 for w in waits) and len(set(waits)) == 200


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    assert RetryPolicy(backoff=0.5).delay(RateLimitError("429", retry_after=3), 1, random.Random(1)) == 3


def test_retry_after_of_an_overloaded_server_counts_too() -> None:
    assert RetryPolicy(backoff=0.5, jitter=0).delay(ServerError("503", retry_after=2.5), 1) == 2.5


def test_retry_after_beyond_max_wait_falls_back_instead() -> None:
    assert RetryPolicy(max_wait=10).delay(RateLimitError("429", retry_after=60), 1) is None


@pytest.mark.parametrize(
    "error",
    [ServerError("502"), RateLimitError("429"), ProviderTimeout("slow"),
     ProviderConnectionError("reset after sending", connected=True)],
)
def test_transient_failures_are_retried(error: Exception) -> None:
    assert RetryPolicy(max_retries=1, jitter=0).delay(error, 1) == 0.5


@pytest.mark.parametrize(
    "error",
    [AuthenticationError("401"), BadRequestError("400"), ModelLoadError("no file"),
     ProviderConnectionError("refused"), RuntimeError("not a provider error")],
)
def test_failures_that_would_repeat_are_not_retried(error: Exception) -> None:
    assert RetryPolicy(max_retries=5).delay(error, 1) is None
