"""Issue 14: every listener URL is a secret, on a real server. Credentials in the URL shapes
nobody listed (a webhook path, ``?code=``, ``?sig=``, ``?key=``, ``?auth=``,
``https://TOKEN@host``, ``redis://TOKEN@host``) are encrypted at rest, shown by the URL's
shape to keys that may not manage the listener (whole to those that may), kept when a
redacted definition is sent back, and never appear in statuses, run records, dead letters or
the server's log, even while a sink keeps failing with the URL in hand."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from modelbus.connectors.base import OutMessage
from modelbus.connectors.local import SqliteQueue
from tests.security.conftest import make_key, store_rows
from tests.support.server import ModelbusServer, free_port

TOKEN = "Tk9secretVALUE"  # in every URL below, in one place or another
SHAPES = {
    "webhook path": f"https://hooks.example/services/T0/B0/{TOKEN}",
    "code": f"https://fn.example/api/run?code={TOKEN}",
    "sig": f"https://blob.example/c/b?sv=1&sig={TOKEN}",
    "key": f"https://api.example/v1?key={TOKEN}",
    "auth": f"https://api.example/x?auth={TOKEN}",
    "https userinfo": f"https://{TOKEN}@gw.example:8443/in",
}
REDIS_SOURCE = f"redis://{TOKEN}@127.0.0.1:9/0?stream=in"
SHOWN = {
    "webhook path": "https://hooks.example/***/***/***/***",
    "code": "https://fn.example/***/***?code=***",
    "sig": "https://blob.example/***/***?sv=***&sig=***",
    "key": "https://api.example/***?key=***",
    "auth": "https://api.example/***?auth=***",
    "https userinfo": "https://***@gw.example:8443/***",
}


def _definition(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": REDIS_SOURCE,
        "model": "test/echo@1.0.0",
        "outputs": list(SHAPES.values()),
        "error_sink": f"local://{name}-dead",
        "enabled": False,  # stored, never opened: the URLs lead nowhere
    }


def test_every_url_shape_is_sealed_and_shown_by_scope(server: ModelbusServer) -> None:
    name = f"shapes-{uuid.uuid4().hex[:8]}"
    reader = make_key(server, "call:*", name="reader")
    unrelated_manager = make_key(server, "listeners:manage", "call:test/other", name="mgr")
    manager = make_key(server, "listeners:manage", "call:test/echo", name="echo-mgr")
    with server.http() as http:
        created = http.post("/v1/listeners?check=false", json=_definition(name))
        assert created.status_code == 201, created.text
    try:
        # At rest: the raw row holds no part of any URL but its scheme and host.
        [row] = store_rows(server, f"SELECT definition FROM listeners WHERE name = '{name}'")
        assert TOKEN not in row["definition"]
        assert "hooks.example" in row["definition"]

        # Keys that may not manage it see every URL by its shape, on every route.
        for key in (reader, unrelated_manager):
            with server.http(key) as http:
                shown = http.get(f"/v1/listeners/{name}").json()["definition"]
                assert shown["outputs"] == list(SHOWN.values())
                assert shown["source"] == "redis://***@127.0.0.1:9/***?stream=***"
                for path in (
                    "/v1/listeners",
                    f"/v1/listeners/{name}/status",
                    "/v1/users/test/event-listeners",
                    "/v1/asyncapi.json",
                ):
                    answer = http.get(path)
                    assert answer.status_code == 200, (path, answer.text)
                    assert TOKEN not in answer.text, path
        # A key that may manage it sees it whole: it edits it.
        for key in (manager, server.admin_key):
            with server.http(key) as http:
                whole = http.get(f"/v1/listeners/{name}").json()["definition"]
                assert whole["outputs"] == list(SHAPES.values())
                assert whole["source"] == REDIS_SOURCE

        # The redacted view sent back keeps every stored value; an edited part is kept.
        with server.http(reader) as http:
            redacted = http.get(f"/v1/listeners/{name}").json()["definition"]
        redacted["max_in_flight"] = 3
        redacted["outputs"][0] = "https://hooks.example/***/***/***/***"
        with server.http(manager) as http:
            put = http.put(f"/v1/listeners/{name}?check=false", json=redacted)
            assert put.status_code == 200, put.text
            whole = http.get(f"/v1/listeners/{name}").json()["definition"]
            assert whole["max_in_flight"] == 3
            assert whole["outputs"] == list(SHAPES.values())
            assert whole["source"] == REDIS_SOURCE
            # a stored secret is never sent to another host
            moved = {**redacted, "source": "redis://***@elsewhere:9/***?stream=***"}
            refused = http.put(f"/v1/listeners/{name}?check=false", json=moved)
            assert refused.status_code == 400 and "scheme or host" in refused.text
            # nor does a new listener get one
            fresh = {**redacted, "name": f"{name}-copy"}
            refused = http.post("/v1/listeners?check=false", json=fresh)
            assert refused.status_code == 400 and "type the whole URL" in refused.text
        [row] = store_rows(server, f"SELECT definition FROM listeners WHERE name = '{name}'")
        assert TOKEN not in row["definition"]
    finally:
        with server.http() as http:
            http.delete(f"/v1/listeners/{name}")
    assert TOKEN not in server.log()


async def _publish(data_dir: Path, queue: str, message_id: str) -> None:
    local = SqliteQueue(data_dir / "queues" / f"{queue}.sqlite")
    await local.open()
    try:
        await local.publish([OutMessage(id=message_id, body=b'{"x": 1}')])
    finally:
        await local.close()


def test_a_failing_webhook_never_shows_its_url(server: ModelbusServer) -> None:
    """The sink's URL is in hand at every failure: connection refused, retries, the dead
    letter, the status, the run record and every log line show it by its shape only."""
    name = f"failing-{uuid.uuid4().hex[:8]}"
    port = free_port()  # nobody listens: every POST fails, transiently
    sink = f"http://127.0.0.1:{port}/services/T0/B0/{TOKEN}?sig={TOKEN}x"
    definition = {
        "name": name,
        "source": f"local://{name}-in",
        "model": "test/echo@1.0.0",
        "outputs": [sink],
        "error_sink": f"local://{name}-dead",
        "retry": {"max_attempts": 2, "initial_backoff_s": 0.05, "max_backoff_s": 0.1},
    }
    reader = make_key(server, "call:*", name="failing-reader")
    answers: list[str] = []
    with server.http() as http:
        created = http.post("/v1/listeners?check=false", json=definition)
        assert created.status_code == 201, created.text
    try:
        asyncio.run(_publish(Path(server.data_dir), f"{name}-in", "m-1"))
        deadline = time.monotonic() + 90
        with server.http(reader) as http:
            while time.monotonic() < deadline:
                letters = http.get(f"/v1/listeners/{name}/dead-letters")
                answers.append(letters.text)
                if letters.status_code == 200 and (items := json.loads(letters.text)["items"]):
                    answers.append(http.get(f"/v1/dead-letters/{items[0]['id']}").text)
                    break
                time.sleep(0.3)
            else:
                raise AssertionError(f"never dead-lettered: {answers[-1]}")
            for path in (
                f"/v1/listeners/{name}/status",
                f"/v1/runs/m-1?listener={name}",
                f"/v1/listeners/{name}",
            ):
                answers.append(http.get(path).text)
        with server.http() as http:  # the admin's status too: statuses are masked for all
            answers.append(http.get(f"/v1/listeners/{name}/status").text)
    finally:
        with server.http() as http:
            http.delete(f"/v1/listeners/{name}")
    everything = "\n".join(answers)
    assert TOKEN not in everything
    assert f"127.0.0.1:{port}" in everything  # where it failed is still said
    log = server.log()
    assert TOKEN not in log
    assert name in log  # the listener's lifecycle was logged
    rows = list(store_rows(server, f"SELECT * FROM dead_letters WHERE listener = '{name}'"))
    rows += list(store_rows(server, f"SELECT * FROM runs WHERE listener = '{name}'"))
    assert rows and TOKEN not in repr(rows)
