"""Retry policy: how many attempts a delivery gets and how long to wait between them.

Backoff is exponential, capped, and jittered downwards (a fraction of each delay is
randomised away) so that a burst of failures does not come back as a synchronized burst::

    delay(attempt) = min(max_backoff_s, initial_backoff_s * multiplier ** (attempt - 1))
                     * (1 - jitter * U[0, 1))

``jitter=1`` is AWS's "full jitter"; the default 0.2 keeps delays growing monotonically
(each delay is at least ``multiplier * (1 - jitter)`` times the previous floor).
"""

from __future__ import annotations

import random

from pydantic import model_validator

from modelbus.client.schemas import RetryFields


class RetryPolicy(RetryFields):  # the fields are the SDK's: client.schemas.RetryFields
    """When a transient failure is retried, and after how long.

    A delivery is tried at most ``max_attempts`` times (the broker's delivery count); after
    the last transient failure it is dead-lettered. Permanent failures are dead-lettered at
    once, whatever this policy says.
    """

    @model_validator(mode="after")
    def _cap_not_below_start(self) -> RetryPolicy:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) is below initial_backoff_s "
                f"({self.initial_backoff_s}): raise max_backoff_s or lower initial_backoff_s"
            )
        return self

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based). Pure given ``rng``."""
        exponent = max(attempt, 1) - 1
        try:
            base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**exponent)
        except OverflowError:  # float ** int overflows for absurd attempt numbers
            base = self.max_backoff_s
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` was the last one the policy allows."""
        return attempt >= self.max_attempts
