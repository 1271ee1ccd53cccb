"""Run claims of a replica whose process is gone from this machine are taken at once, not
after they expire; every other claim still waits (modelbus.listeners.claims), on SQLite and
PostgreSQL (tests/conftest.py's ``db``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from modelbus.connectors.base import Delivery
from modelbus.listeners.claims import (
    UNKNOWN_SCOPE,
    RunClaims,
    claimant_gone,
    claimant_id,
    process_scope,
)
from modelbus.listeners.health import Health
from modelbus.listeners.leases import Flight
from modelbus.store.database import Database
from modelbus.store.runs import RunStore

TTL_S = 60.0  # far longer than any test: a claim taken here was not taken by expiry


@pytest.fixture
async def store(db: Database) -> AsyncIterator[RunStore]:
    runs = RunStore(db.engine)
    yield runs
    await runs.close()


def a_dead_pid() -> int:
    """The process id of a process that ran here and has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def claimant(pid: int, *, host: str | None = None, scope: str | None = None) -> str:
    host = host if host is not None else socket.gethostname()[:60].replace("/", "_")
    return f"{host}/{scope or process_scope()}/{pid}/0123456789ab"


def flight(message_id: str) -> Flight:
    delivery = Delivery(message_id=message_id, body=b"{}", attempt=2)
    return Flight(delivery=delivery, received_at=0.0, lease_until=0.0)


def test_a_claimant_id_names_this_process_which_is_not_gone() -> None:
    me = claimant_id()
    host, scope, pid, random = me.split("/")
    assert host == socket.gethostname()[:60].replace("/", "_")
    assert (int(pid), scope) == (os.getpid(), process_scope()) and len(random) == 12
    assert claimant_id() != me  # one per runtime
    assert not claimant_gone(me)


@pytest.mark.skipif(process_scope() == UNKNOWN_SCOPE, reason="no /proc: nothing is ever gone")
def test_only_an_ended_process_of_this_host_boot_and_pid_namespace_is_gone() -> None:
    dead = a_dead_pid()
    assert claimant_gone(claimant(dead))
    assert not claimant_gone(claimant(dead, host="another-host"))
    assert not claimant_gone(claimant(dead, scope="0" * 12))  # another boot or namespace
    assert not claimant_gone(claimant(dead, scope=UNKNOWN_SCOPE))
    assert not claimant_gone(f"{socket.gethostname()}/{dead}/0123456789ab")  # an older id
    assert not claimant_gone(claimant(1))  # init: alive (maybe another user's)
    assert not claimant_gone("junk")


@pytest.mark.skipif(process_scope() == UNKNOWN_SCOPE, reason="no /proc: nothing is ever gone")
async def test_claims_of_a_gone_process_are_taken_at_once_and_a_live_ones_wait(
    store: RunStore,
) -> None:
    gone, alive = claimant(a_dead_pid()), claimant(os.getpid())
    assert await store.claim("l", gone, {"m1": 1, "m2": 1}, ttl_s=TTL_S) == {"m1", "m2"}
    assert await store.claim("l", alive, {"m3": 1}, ttl_s=TTL_S) == {"m3"}
    assert await store.claimants("l", ["m1", "m3", "m9"]) == {"m1": gone, "m3": alive}

    claims = RunClaims("l", store, Health("l"), flights=[], ttl_s=TTL_S)
    flights = [flight("m1"), flight("m3"), flight("m4")]
    assert await claims.claim(flights) == [True, False, True]
    assert flights[0].claimed_at is not None and flights[1].claimed_at is None
    holders = await store.claimants("l", ["m1", "m2", "m3", "m4"])
    # m2, not asked for, stays the gone process's until asked for or expired
    assert holders == {"m1": claims.claimant, "m2": gone, "m3": alive, "m4": claims.claimant}
