from __future__ import annotations

import pytest

from modelbus.errors import (
    ConnectorError,
    InputRejected,
    InvalidInput,
    InvocationTimeout,
    ModelError,
    ModelNotFound,
    Overloaded,
    RunnerCrashed,
    VersionNotFound,
    VersionSpecError,
)
from modelbus.listeners.outcomes import (
    Ack,
    DeadLetterDecision,
    Failed,
    Release,
    Skipped,
    Succeeded,
    Unsettled,
    decide,
    is_permanent,
)
from modelbus.listeners.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=2, jitter=0)


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (InvocationTimeout("t"), False),
        (RunnerCrashed("c"), False),
        (Overloaded("o"), False),
        (ModelError("m"), False),
        (ModelError("m", permanent=True), True),
        (InputRejected("i"), True),
        (InvalidInput("undecodable"), True),
        (ModelNotFound("no model"), False),
        (VersionNotFound("no version"), False),
        (VersionSpecError("1.x.y"), True),
        (ConnectorError("sink down"), False),
        (ConnectorError("object gone", permanent=True), True),
        (RuntimeError("a bug"), False),
    ],
)
def test_is_permanent(error: BaseException, permanent: bool) -> None:
    assert is_permanent(error) is permanent


def failed(error: BaseException) -> Failed:
    return Failed(error, "invoke", is_permanent(error))


def test_decisions() -> None:
    assert decide(Succeeded([], "1.0.0", 1.0), 1, POLICY) == Ack()
    assert decide(Skipped("filtered"), 5, POLICY) == Ack()
    assert decide(failed(RunnerCrashed("x")), 1, POLICY) == Release(2.0)
    assert decide(failed(RunnerCrashed("x")), 2, POLICY) == Release(4.0)
    assert decide(failed(RunnerCrashed("x")), 3, POLICY) == DeadLetterDecision()
    assert decide(failed(InputRejected("x")), 1, POLICY) == DeadLetterDecision()
    # An outcome that could not be made durable is never dead-lettered on its own account.
    assert decide(Unsettled(ConnectorError("dlq down")), 9, POLICY) == Release(300.0)
