"""Per-listener Prometheus metrics, in a registry that is passed in (no global state).

=================================================  =========  ===========================
metric                                             type       labels
=================================================  =========  ===========================
``modelbus_listener_received_total``               counter    listener
``modelbus_listener_succeeded_total``              counter    listener
``modelbus_listener_retried_total``                counter    listener
``modelbus_listener_dead_lettered_total``          counter    listener
``modelbus_listener_skipped_total``                counter    listener, reason
``modelbus_listener_in_flight``                    gauge      listener
``modelbus_listener_oldest_in_flight_age_seconds`` gauge      listener
``modelbus_listener_backlog``                      gauge      listener
``modelbus_listener_latency_seconds``              histogram  listener
=================================================  =========  ===========================

``reason`` is ``filtered`` (the filter refused it), ``duplicate`` (already succeeded) or
``no_input`` (an envelope with nothing to run, such as ``s3:TestEvent``). Latency is end to
end: from when the broker accepted the message (or, if it does not say, when it was
received) to when its outcome was settled. The backlog is the messages waiting at the
source, as last read from the broker (:mod:`modelbus.listeners.backlog`, every 5 s by
default): NaN until the first reading, and for a source that cannot say (MQTT).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS_S", "SKIP_REASONS", "ListenerMetrics", "Metrics"]

SKIP_REASONS = ("filtered", "duplicate", "no_input")
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """The listener metric families of one registry; :meth:`listener` gives one listener's."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ["listener", *labels], registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["listener"], registry=registry)

        self._received = counter("modelbus_listener_received", "Deliveries received.")
        self._succeeded = counter("modelbus_listener_succeeded", "Deliveries that succeeded.")
        self._retried = counter("modelbus_listener_retried", "Deliveries released for a retry.")
        self._dead = counter("modelbus_listener_dead_lettered", "Deliveries dead-lettered.")
        self._skipped = counter(
            "modelbus_listener_skipped", "Deliveries acked without invoking.", "reason"
        )
        self._in_flight = gauge("modelbus_listener_in_flight", "Deliveries being processed.")
        self._oldest = gauge(
            "modelbus_listener_oldest_in_flight_age_seconds",
            "Age of the oldest delivery being processed, since the broker accepted it.",
        )
        self._backlog = gauge(
            "modelbus_listener_backlog",
            "Messages waiting at the source, as last read from the broker (NaN: unknown).",
        )
        self._latency = Histogram(
            "modelbus_listener_latency_seconds",
            "End-to-end latency, from broker acceptance to settlement.",
            ["listener"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._listeners: dict[str, ListenerMetrics] = {}

    def listener(self, name: str) -> ListenerMetrics:
        """The metrics of listener ``name`` (the same object on every call; counts survive a
        restart of the listener)."""
        metrics = self._listeners.get(name)
        if metrics is None:
            metrics = self._listeners[name] = ListenerMetrics(self, name)
        return metrics

    def snapshot(self, name: str) -> dict[str, float]:
        """Listener ``name``'s figures (:meth:`ListenerMetrics.snapshot`) without creating
        its series: all zero for a listener with none (a status read racing a delete must
        not bring back the series :meth:`remove` dropped)."""
        metrics = self._listeners.get(name)
        if metrics is not None:
            return metrics.snapshot()
        return _figures(_Counts(), in_flight=0.0, oldest_age_s=0.0)

    def latency_counts(self, name: str) -> tuple[int, ...]:
        """Listener ``name``'s settled deliveries per latency bucket since this process
        started: one count per bound of :data:`LATENCY_BUCKETS_S` (latencies up to it and
        above the one before), then one for the latencies above the last bound. All zero for
        a listener with no series (as :meth:`snapshot`)."""
        metrics = self._listeners.get(name)
        if metrics is None:
            return (0,) * (len(LATENCY_BUCKETS_S) + 1)
        return metrics.latency_counts()

    def names(self) -> set[str]:
        """The listeners that have series here."""
        return set(self._listeners)

    def remove(self, name: str) -> None:
        """Drop a deleted listener's series."""
        if self._listeners.pop(name, None) is None:
            return
        for family in (self._received, self._succeeded, self._retried, self._dead):
            family.remove(name)
        for reason in SKIP_REASONS:
            self._skipped.remove(name, reason)
        for gauge in (self._in_flight, self._oldest, self._backlog):
            gauge.remove(name)
        self._latency.remove(name)


@dataclass(slots=True)
class _Counts:
    received: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    duplicate: int = 0
    no_input: int = 0
    latency_count: int = 0
    latency_sum_s: float = 0.0
    # Per bucket of LATENCY_BUCKETS_S, then above the last bound (not cumulative).
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))


def _zero() -> float:
    return 0.0


def _unknown() -> float:
    return float("nan")


class ListenerMetrics:
    """One listener's series. Methods are cheap and never raise."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._received = metrics._received.labels(name)
        self._succeeded = metrics._succeeded.labels(name)
        self._retried = metrics._retried.labels(name)
        self._dead = metrics._dead.labels(name)
        self._skipped = {r: metrics._skipped.labels(name, r) for r in SKIP_REASONS}
        self._in_flight = metrics._in_flight.labels(name)
        self._oldest = metrics._oldest.labels(name)
        self._backlog = metrics._backlog.labels(name)
        self._backlog.set_function(_unknown)
        self._latency = metrics._latency.labels(name)
        self._counts = _Counts()
        self._in_flight_fn: Callable[[], float] = _zero
        self._oldest_fn: Callable[[], float] = _zero
        self.track(_zero, _zero)

    def track(self, in_flight: Callable[[], float], oldest_age_s: Callable[[], float]) -> None:
        """Read the two gauges from the running listener when scraped."""
        self._in_flight_fn, self._oldest_fn = in_flight, oldest_age_s
        self._in_flight.set_function(in_flight)
        self._oldest.set_function(oldest_age_s)

    def track_backlog(self, backlog: Callable[[], float]) -> None:
        """Read the backlog gauge from the running listener's last reading when scraped."""
        self._backlog.set_function(backlog)

    def received(self, count: int = 1) -> None:
        self._counts.received += count
        self._received.inc(count)

    def succeeded(self, count: int = 1) -> None:
        self._counts.succeeded += count
        self._succeeded.inc(count)

    def retried(self, count: int = 1) -> None:
        self._counts.retried += count
        self._retried.inc(count)

    def dead_lettered(self, count: int = 1) -> None:
        self._counts.dead_lettered += count
        self._dead.inc(count)

    def skipped(self, reason: str) -> None:
        """``reason`` is one of :data:`SKIP_REASONS`."""
        setattr(self._counts, reason, getattr(self._counts, reason) + 1)
        self._skipped[reason].inc()

    def settled(self, latency_s: float) -> None:
        """Observe one delivery's end-to-end latency."""
        latency_s = max(0.0, latency_s)
        self._counts.latency_count += 1
        self._counts.latency_sum_s += latency_s
        self._counts.latency_buckets[bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1
        self._latency.observe(latency_s)

    def latency_counts(self) -> tuple[int, ...]:
        """Settled deliveries per latency bucket (see :meth:`Metrics.latency_counts`)."""
        return tuple(self._counts.latency_buckets)

    def snapshot(self) -> dict[str, float]:
        """The figures ``listeners status`` shows: counters since the process started, the
        two gauges now, and the latency count/sum."""
        return _figures(
            self._counts, in_flight=self._in_flight_fn(), oldest_age_s=self._oldest_fn()
        )


def _figures(counts: _Counts, *, in_flight: float, oldest_age_s: float) -> dict[str, float]:
    return {
        "received": counts.received,
        "succeeded": counts.succeeded,
        "retried": counts.retried,
        "dead_lettered": counts.dead_lettered,
        "skipped_filtered": counts.filtered,
        "skipped_duplicate": counts.duplicate,
        "skipped_no_input": counts.no_input,
        "in_flight": in_flight,
        "oldest_in_flight_age_s": oldest_age_s,
        "latency_count": counts.latency_count,
        "latency_sum_s": counts.latency_sum_s,
    }
