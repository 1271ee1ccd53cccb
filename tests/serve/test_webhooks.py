"""Webhooks end to end: signed POSTs into a real server, results POSTed to a real receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelbus.client import Client
from modelbus.connectors import ConnectorContext, make_sink, make_source, redact_url, scheme_of
from modelbus.connectors.webhook import (
    _split_sink_url,
    hook_attributes,
    sign,
    verify,
)
from modelbus.errors import DefinitionError, Unauthenticated
from tests.support.server import ModelbusServer

from .conftest import eventually, unique

SECRET = "in-secret-0123456789abcdef"
OUT_SECRET = "out-secret-0123456789abcdef"


@dataclass
class Receiver:
    """A real HTTP server in a thread that records POSTs and answers scripted statuses."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/results") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, status: int = 200) -> list[bytes]:
        return [b for _, b, s in self.received if s == status]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                status = state.statuses.pop(0) if state.statuses else 200
                state.received.append(
                    ({k.lower(): v for k, v in self.headers.items()}, body, status)
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = http.server_address[1]
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()


def post_hook(
    server: ModelbusServer,
    hook: str,
    body: bytes,
    *,
    secret: str = SECRET,
    at: int | None = None,
    **headers: str,
) -> httpx.Response:
    signed = {"X-Modelbus-Signature": sign(secret, body, timestamp=at)}
    extra = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.post(
        f"{server.url}/v1/hooks/{hook}",
        content=body,
        headers={"Content-Type": "application/json", **signed, **extra},
        timeout=30,
    )


def hook_listener(name: str, hook: str, outputs: list[str], **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": f"webhook://{hook}?secret={SECRET}&poll_ms=50",
        "model": "test/echo@1.0.0",
        "outputs": outputs,
        **more,
    }


def test_signed_events_run_and_results_are_posted_signed(
    server: ModelbusServer, admin: Client, receiver: Receiver
) -> None:
    name = hook = unique("orders")
    definition = hook_listener(name, hook, [receiver.url() + f"?secret={OUT_SECRET}"])
    admin.create_listener(definition)
    # the admin may manage it: it sees the URLs whole (any other key sees them redacted,
    # tests/security/test_listener_urls.py)
    shown = admin.listener(name).definition
    assert shown.source == definition["source"] and shown.outputs == definition["outputs"]

    body = json.dumps({"order": 7}).encode()
    answer = post_hook(server, hook, body, Idempotency_Key="order-7", X_Shop="eu")
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"id": "order-7", "listeners": [name]}

    eventually(lambda: receiver.bodies())
    [(headers, posted, _)] = receiver.received
    event = json.loads(posted)
    assert event["data"] == {"order": 7}
    assert headers["content-type"].startswith("application/cloudevents+json")
    assert headers["idempotency-key"] == headers["x-modelbus-id"] == event["id"]
    assert headers["x-modelbus-attr-sourcemessageid"] == "order-7"
    verify(OUT_SECRET, headers["x-modelbus-signature"], posted)
    run = admin.runs("order-7", listener=name)[0]
    assert run.status == "succeeded"
    # where the result went, by the URL's shape: run records are read by any key
    assert run.result_location == [redact_url(receiver.url()) + "?secret=***"]

    # The same event again (a sender's retry): accepted, recognised, not run twice.
    assert post_hook(server, hook, body, Idempotency_Key="order-7").status_code == 202
    eventually(lambda: admin.listener_status(name).counters["skipped_duplicate"] >= 1)
    assert len(receiver.received) == 1
    admin.delete_listener(name)


def test_unsigned_wrong_or_stale_posts_are_refused(server: ModelbusServer, admin: Client) -> None:
    name = hook = unique("guarded")
    admin.create_listener(hook_listener(name, hook, []))
    body = b'{"a": 1}'
    url = f"{server.url}/v1/hooks/{hook}"
    assert httpx.post(url, content=body, timeout=30).status_code == 401
    assert post_hook(server, hook, body, secret="not-the-secret-at-all").status_code == 401
    stale = post_hook(server, hook, body, at=int(time.time()) - 3600)
    assert stale.status_code == 401
    assert "replays are refused" in stale.json()["error"]["message"]
    early = post_hook(server, hook, body, at=int(time.time()) + 3600)
    assert early.status_code == 401
    tampered = httpx.post(
        url,
        content=b'{"a": 2}',
        headers={"X-Modelbus-Signature": sign(SECRET, body)},
        timeout=30,
    )
    assert tampered.status_code == 401
    assert post_hook(server, unique("nobody"), body).status_code == 404
    assert admin.listener_status(name).counters["received"] == 0
    admin.delete_listener(name)


def test_every_listener_on_a_hook_gets_the_events_signed_with_its_secret(
    server: ModelbusServer, admin: Client
) -> None:
    hook = unique("shared")
    first, second, other = unique("a"), unique("b"), unique("c")
    admin.create_listener(hook_listener(first, hook, []))
    admin.create_listener(hook_listener(second, hook, []))
    other_secret = "another-secret-0123456789"
    admin.create_listener(
        {**hook_listener(other, hook, []), "source": f"webhook://{hook}?secret={other_secret}"}
    )
    accepted = post_hook(server, hook, b'"x"', Idempotency_Key="e-1").json()
    assert sorted(accepted["listeners"]) == sorted([first, second])
    for name in (first, second):
        eventually(lambda name=name: admin.runs("e-1", listener=name)[0].status == "succeeded")
    assert post_hook(server, hook, b'"y"', secret=other_secret).json()["listeners"] == [other]
    for name in (first, second, other):
        admin.delete_listener(name)


def test_the_sink_retries_transient_answers_and_dead_letters_permanent_ones(
    server: ModelbusServer, admin: Client, receiver: Receiver
) -> None:
    name = hook = unique("flaky")
    retry = {"max_attempts": 5, "initial_backoff_s": 0.1, "max_backoff_s": 0.2}
    admin.create_listener(hook_listener(name, hook, [receiver.url()], retry=retry))
    receiver.statuses = [503, 429]
    post_hook(server, hook, b'{"n": 1}', Idempotency_Key="flaky-1")
    eventually(lambda: admin.runs("flaky-1", listener=name)[0].status == "succeeded")
    assert [s for _, _, s in receiver.received] == [503, 429, 200]
    keys = {h["idempotency-key"] for h, _, _ in receiver.received}
    assert len(keys) == 1  # the same output id on every attempt
    assert admin.runs("flaky-1", listener=name)[0].attempts == 3

    receiver.statuses = [400]
    post_hook(server, hook, b'{"n": 2}', Idempotency_Key="flaky-2")
    run = eventually(
        lambda: (r := admin.runs("flaky-2", listener=name)[0]).status == "dead_lettered" and r
    )
    assert run.attempts == 1  # 400 is not retried
    [letter] = admin.dead_letters(name).items
    assert "answered 400" in letter.error_message
    admin.delete_listener(name)


def test_webhook_urls_are_checked() -> None:
    assert scheme_of("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs") == "sqs"
    assert scheme_of("https://hooks.example/x") == "https"
    assert scheme_of("webhook://orders?secret=x") == "webhook"
    ctx = ConnectorContext(listener="l", data_dir=Path("/tmp"))
    for url, says in (
        ("webhook://orders", r"give \?secret="),
        ("webhook://orders?secret=short", "at least 16"),
        ("webhook://orders?secret=0123456789abcdef&colour=red", "options are"),
        ("webhook://bad name?secret=0123456789abcdef", "expected webhook://NAME"),
        ("https://hooks.example/x?secret=0123456789abcdef", "is a webhook sink"),
    ):
        with pytest.raises(DefinitionError, match=says) as refused:
            make_source(url, ctx)
        assert "0123456789abcdef" not in str(refused.value)
    with pytest.raises(DefinitionError, match="receives webhooks"):
        make_sink("webhook://orders?secret=0123456789abcdef", ctx)
    with pytest.raises(DefinitionError, match="timeout_s"):
        make_sink("https://h/x?timeout_s=0", ctx)
    assert _split_sink_url("https://h/x?a=1&secret=s&timeout_s=5&b=2#f") == (
        "https://h/x?a=1&b=2#f",
        {"secret": "s", "timeout_s": "5"},
    )


def test_signatures_and_header_attributes() -> None:
    body = b"payload"
    header = sign("k" * 20, body, timestamp=1_000_000)
    assert verify("k" * 20, header, body, now=1_000_100)
    assert verify("k" * 20, header + ",v1=" + "0" * 64, body, now=1_000_000)  # rotation
    for bad in (None, "", "v1=abc", "t=x,v1=abc", header.replace("v1=", "v1=0")):
        with pytest.raises(Unauthenticated):
            verify("k" * 20, bad, body, now=1_000_000)
    with pytest.raises(Unauthenticated, match="replays"):
        verify("k" * 20, header, body, now=1_000_301)
    attributes = hook_attributes(
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "ce-type": "com.example.created",
            "X-Modelbus-Attr-originid": "first%20id",
            "X-Modelbus-Signature": header,
            "Authorization": "Bearer nope",
            "Host": "h",
        }
    )
    assert attributes == {
        "content-type": "application/json",
        "x-github-event": "push",
        "ce-type": "com.example.created",
        "originid": "first id",
    }
