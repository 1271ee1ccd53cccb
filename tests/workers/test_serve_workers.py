"""``modelbus serve --workers N``: listeners run in the serve process and N-1 worker
processes, which compete for a shared source's messages and leave an unshareable one to
the process holding its lease; the API sums them; a killed worker is restarted without
losing a message; a stop leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from modelbus.client.schemas import ListenerStatusOut
from tests.serve.conftest import eventually, publish, receive_all
from tests.support.server import MODELBUS, ModelbusServer, clean_env, free_port

from .conftest import (
    add_messages,
    alive,
    live_workers,
    redis_listener,
    run_records,
    this_node,
)

Serve = Callable[..., ModelbusServer]


def summed_until(server: ModelbusServer, name: str, succeeded: int) -> ListenerStatusOut:
    def done() -> ListenerStatusOut | None:
        with server.client() as client:
            status = client.listener_status(name)
        return status if status.counters.get("succeeded") == succeeded else None

    return eventually(done, 90, poll_s=0.25)


def test_a_shared_listener_runs_in_every_process_and_the_api_sums_them(
    serve: Serve, redis: Redis, streams: tuple[str, str]
) -> None:
    server = serve(2)
    stream, out = streams
    me = this_node(server)
    assert me.workers == 2
    [worker] = live_workers(server)
    assert worker.pid != me.pid and alive(worker.pid)
    assert worker.address == me.address  # the API of a worker's node is the serve process's

    with server.client() as client:
        client.create_listener(redis_listener("orders", stream, out), check=False)
        eventually(  # the worker started it at once (told by the serve process)
            lambda: (
                {p.state for p in client.listener_status("orders").nodes} == {"running"}
                and len(client.listener_status("orders").nodes) == 2
            ),
            30,
        )
    ids = add_messages(redis, stream, [json.dumps({"n": i}).encode() for i in range(400)])

    status = summed_until(server, "orders", 400)
    per_node = {part.node: part.counters["succeeded"] for part in status.nodes}
    assert set(per_node) == {me.id, worker.id}
    assert all(count > 0 for count in per_node.values()), per_node  # both consumed
    assert sum(per_node.values()) == status.counters["succeeded"] == 400
    assert status.counters["received"] == 400

    table = subprocess.run(
        [MODELBUS, "nodes", "--live"],
        env=clean_env(
            {"MODELBUS_URL": server.url, "MODELBUS_API_KEY": server.admin_key, "COLUMNS": "250"}
        ),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert f"{worker.id[:8]} (worker of {me.id[:8]})" in " ".join(table.stdout.split())

    # /metrics: every process's series, labelled by worker, add up to the same
    succeeded = eventually(
        lambda: (found := metric(server, "orders")) and sum(found.values()) == 400 and found, 30
    )
    assert set(succeeded) == {"0", "1"} and all(v > 0 for v in succeeded.values())

    records = run_records(server.data_dir, "orders")  # two processes wrote to one SQLite
    assert set(records) == set(ids)
    assert set(records.values()) == {("succeeded", 1)}  # each processed exactly once
    assert redis.xlen(out) == 400


def metric(server: ModelbusServer, listener: str) -> dict[str, float]:
    """``modelbus_listener_succeeded_total`` of ``listener`` in ``/metrics``, by worker."""
    with server.http() as http:
        text = http.get("/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "modelbus_listener_succeeded_total"
                and sample.labels["listener"] == listener
            ):
                found[sample.labels["worker"]] = sample.value
    return found


def test_an_unshareable_listener_runs_in_one_process_only(serve: Serve) -> None:
    server = serve(3)
    with server.client() as client:
        client.create_listener(
            {
                "name": "local",
                "source": "local://workers-in?poll_ms=50",
                "model": "test/echo@1.0.0",
                "outputs": ["local://workers-out"],
            }
        )

        def placed() -> dict[str, str] | None:
            nodes = client.listener_status("local").nodes
            states = {part.node: part.state for part in nodes}
            wanted = ["running", "standby", "standby"]
            return states if sorted(states.values()) == wanted else None

        states = eventually(placed, 30)
    publish(server.data_dir, "local", *[(f"m{i}", b'{"n": 1}') for i in range(30)])
    publish(server.data_dir, "workers-in", *[(f"m{i}", b'{"n": 1}') for i in range(30)])
    status = summed_until(server, "local", 30)
    owner = next(node for node, state in states.items() if state == "running")
    assert {p.node: p.counters.get("succeeded", 0) for p in status.nodes} == {
        node: (30 if node == owner else 0) for node in states
    }
    assert len(receive_all(server.data_dir, "workers-out")) == 30


def test_a_killed_worker_is_restarted_and_no_message_is_lost(
    serve: Serve, redis: Redis, streams: tuple[str, str]
) -> None:
    server = serve(2)
    stream, out = streams
    [worker] = live_workers(server)
    with server.client() as client:
        # a short lease: what the killed worker held is claimed by another consumer soon
        listener = redis_listener("slowish", stream, out, lease_s="3")
        client.create_listener(listener, check=False)
        eventually(lambda: len(client.listener_status("slowish").nodes) == 2, 30)
    bodies = [json.dumps({"n": i, "sleep": 0.1}).encode() for i in range(200)]
    ids = add_messages(redis, stream, bodies)

    def worker_busy() -> bool:
        with server.client() as client:
            parts = client.listener_status("slowish").nodes
        return any(p.node == worker.id and p.counters.get("in_flight", 0) > 0 for p in parts)

    eventually(worker_busy, 60, poll_s=0.1)
    os.kill(worker.pid, signal.SIGKILL)

    def restarted() -> bool:
        return any(n.id != worker.id and alive(n.pid) for n in live_workers(server))

    eventually(restarted, 60)
    eventually(lambda: set(run_records(server.data_dir, "slowish")) == set(ids), 120)
    eventually(  # what the dead worker had received is run again, then settled
        lambda: {s for s, _ in run_records(server.data_dir, "slowish").values()} == {"succeeded"},
        120,
    )
    # what the worker held when it died was delivered again (the heartbeat that showed it
    # busy is at most half a second old; each message takes 0.1 s a runner)
    # (more than once if it came back while the dead worker's run claim still held: each
    # delivery refused as busy counts as an attempt)
    assert max(attempts for _, attempts in run_records(server.data_dir, "slowish").values()) >= 2
    assert "worker 1 (node " in server.log() and "exited with signal SIGKILL" in server.log()
    with server.client() as client:
        dead = next(n for n in client.nodes() if n.id == worker.id)
    assert dead.state == "gone" and dead.stopped_at is not None  # marked at once
    # every message has its result (duplicates allowed: the dead worker's last batch may
    # have been published before it could ack)
    sources = {fields[b"sourcemessageid"].decode() for _, fields in redis.xrange(out)}
    assert sources == set(ids)


def test_sigterm_stops_every_process_gracefully(serve: Serve) -> None:
    server = serve(3)
    assert server.process is not None
    pids = [n.pid for n in live_workers(server)]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    server.process.send_signal(signal.SIGTERM)
    # uvicorn ends by raising the signal it handled again, as a single process does
    assert server.process.wait(60) in (0, -signal.SIGTERM)
    log = server.log()
    assert log.count("modelbus.web.supervisor stopping worker") == 2
    assert "Application shutdown complete" in log
    assert not [pid for pid in pids if alive(pid)]
    assert "exited with" not in log  # stopped, not restarted


def test_a_killed_serve_process_takes_its_workers_with_it(serve: Serve) -> None:
    server = serve(2)
    assert server.process is not None
    [worker] = live_workers(server)
    os.kill(server.process.pid, signal.SIGKILL)  # the serve process alone, not its group
    server.process.wait(10)
    deadline = time.monotonic() + 10
    while alive(worker.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker.pid)


def serve_refused(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """What a ``modelbus serve`` that must refuse to start (exit status 2) printed."""
    argv = [MODELBUS, "serve", "--port", str(free_port()), "--data-dir", str(data_dir), *args]
    done = subprocess.run(
        argv, env=clean_env(env), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    return " ".join((done.stdout + done.stderr).split())


def test_bad_worker_counts_are_refused_before_anything_starts(tmp_path: Path) -> None:
    said = serve_refused(tmp_path / "a", "--workers", "0")
    assert "--workers" in said and "at least 1" in said
    assert "valid integer" in serve_refused(tmp_path / "b", "--workers", "abc")
    said = serve_refused(tmp_path / "c", env={"MODELBUS_WORKERS": "abc"})
    assert "MODELBUS_WORKERS must be a whole number of processes, at least 1" in said
    assert not (tmp_path / "a").exists()  # refused before the store was made
