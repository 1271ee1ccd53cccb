"""What became of one delivery, and the one decision taken on it.

Each stage of a listener's runtime ends a delivery's way with an outcome
(:class:`Succeeded`, :class:`Skipped`, :class:`Failed`, :class:`Unsettled` when the outcome
could not be made durable, or :class:`Busy` for a second delivery of a message being run;
:class:`Invoked` is the half-way point before publishing).
:func:`decide` alone turns an outcome into :class:`Ack`, :class:`Release` (after a delay) or
:class:`DeadLetterDecision`; :mod:`modelbus.listeners.settle` carries that out. Connectors
never decide (DESIGN.md, delivery contract).

:func:`is_permanent` says which failures retrying cannot help. Transient:
:class:`InvocationTimeout`, :class:`RunnerCrashed`, :class:`Overloaded`, a :class:`ModelError`
the model did not mark permanent, a sink or object-store :class:`ConnectorError` that is not
permanent, and **an unknown model or a version spec that resolves to nothing**
(:class:`NotFound`): it may be published in a minute, so those messages wait out the retries
rather than being dead-lettered at once. Permanent: an undecodable body (:class:`InvalidInput`),
a body over ``max_body_bytes`` (:class:`PayloadTooLarge`), :class:`InputRejected`, a model
error marked permanent, a bad version spec, a permanent connector error (object gone, message
too big). Anything unexpected is treated as transient.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelbus.connectors.base import OutMessage
from modelbus.errors import InvocationError, ModelbusError, NotFound
from modelbus.listeners.envelopes import Correlation, Item
from modelbus.listeners.retry import RetryPolicy
from modelbus.runtime.invocation import Result

__all__ = [
    "Ack",
    "Busy",
    "DeadLetterDecision",
    "Decision",
    "Failed",
    "Invoked",
    "Outcome",
    "Release",
    "Skipped",
    "Succeeded",
    "Unsettled",
    "decide",
    "is_permanent",
]


@dataclass(frozen=True, slots=True)
class Invoked:
    """The model ran for every input; the results still have to be published."""

    results: list[tuple[Item, Correlation, Result]]


@dataclass(frozen=True, slots=True)
class Succeeded:
    """Every result was published to every output sink."""

    outputs: list[OutMessage]
    version: str
    duration_ms: float


@dataclass(frozen=True, slots=True)
class Skipped:
    """Nothing to run: ``filtered``, ``duplicate`` or ``no_input``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A stage failed; ``permanent`` says whether retrying could help."""

    error: BaseException
    stage: str
    permanent: bool
    version: str | None = None

    @classmethod
    def of(cls, exc: BaseException, stage: str) -> Failed:
        """``exc`` raised in ``stage``, classified by :func:`is_permanent`."""
        version = exc.version if isinstance(exc, InvocationError) else None
        return cls(exc, stage, is_permanent(exc), version)


@dataclass(frozen=True, slots=True)
class Unsettled:
    """An outcome could not be made durable (the store or the error sink failed)."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class Busy:
    """The message is being run already, by a delivery of it this listener holds (the
    broker handed it out again, e.g. after its lease lapsed): it is not run a second time
    at once, but handed back to come again later, when that run has settled."""


Outcome = Succeeded | Skipped | Failed | Unsettled | Busy


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class Release:
    delay_s: float


@dataclass(frozen=True, slots=True)
class DeadLetterDecision:
    pass


Decision = Ack | Release | DeadLetterDecision


def decide(outcome: Outcome, attempt: int, policy: RetryPolicy) -> Decision:
    """The one place that chooses between ack, release-after-delay and dead-letter."""
    if isinstance(outcome, Succeeded | Skipped):
        return Ack()
    if isinstance(outcome, Unsettled | Busy):
        # Nothing is durable yet (or it runs already): try it again later, never drop it.
        return Release(policy.backoff_s(attempt))
    if outcome.permanent or policy.exhausted(attempt):
        return DeadLetterDecision()
    return Release(policy.backoff_s(attempt))


def is_permanent(exc: BaseException) -> bool:
    """True if ``exc`` is a failure that retrying cannot help (see the module docstring)."""
    if isinstance(exc, NotFound):
        return False  # unknown model or version: it may be published soon
    if isinstance(exc, ModelbusError):
        return exc.permanent
    return False  # not ours: a bug or a library's hiccup; retrying is the safe side
