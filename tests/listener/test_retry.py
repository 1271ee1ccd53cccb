from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from modelbus.listeners.retry import RetryPolicy


def test_backoff_is_exponential_and_capped_without_jitter() -> None:
    policy = RetryPolicy(initial_backoff_s=1, multiplier=2, max_backoff_s=10, jitter=0)
    assert [policy.backoff_s(a) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_only_shortens_within_its_fraction() -> None:
    policy = RetryPolicy(initial_backoff_s=4, multiplier=2, max_backoff_s=100, jitter=0.25)
    rng = random.Random(7)
    for attempt in range(1, 6):
        ceiling = min(100, 4 * 2 ** (attempt - 1))
        draws = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert all(ceiling * 0.75 <= d <= ceiling for d in draws)
        assert len(set(draws)) > 100  # actually random


def test_delays_keep_growing_with_default_jitter() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    for attempt in range(1, 8):
        assert policy.backoff_s(attempt + 1, rng) > policy.backoff_s(attempt, rng)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert RetryPolicy(jitter=0).backoff_s(10_000) == 300


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(a) for a in (1, 2, 3, 4)] == [False, False, True, True]


def test_cap_below_start_is_refused() -> None:
    with pytest.raises(ValidationError, match="raise max_backoff_s"):
        RetryPolicy(initial_backoff_s=10, max_backoff_s=5)
