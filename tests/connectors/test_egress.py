"""The egress policy (issue 14.3): where connectors may connect, checked when a connector
is made and, for the webhook sink, before each POST; a receiver's body never reaches an
error."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelbus.connectors import (
    ConnectorContext,
    ConnectorPolicy,
    Egress,
    OutMessage,
    make_sink,
    make_source,
)
from modelbus.connectors.webhook import WebhookSink
from modelbus.errors import ConnectorError, PolicyRefused

LEAK = "internal-reply-with-a-secret-token"


def context(tmp_path: Path, egress: Egress) -> ConnectorContext:
    return ConnectorContext(
        listener="egress", data_dir=tmp_path, policy=ConnectorPolicy(egress=egress)
    )


@pytest.fixture
def replier() -> Iterator[tuple[int, list[bytes]]]:
    """A real HTTP server answering every POST 403 with a body worth stealing."""
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            body = LEAK.encode()
            self.send_response(403, f"Forbidden {LEAK}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield http.server_address[1], got
    finally:
        http.shutdown()
        http.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[fe80::1]:80/x",
        "http://[fd00:ec2::254]/latest",
        "redis://169.254.1.1:6379?stream=s",
        "kafka://10.0.0.1:9092,169.254.0.9:9092/topic",
    ],
)
def test_link_local_and_metadata_addresses_are_always_refused(tmp_path: Path, url: str) -> None:
    ctx = context(tmp_path, Egress(allow=("0.0.0.0/0", "::/0")))
    with pytest.raises(PolicyRefused, match="link-local or cloud metadata"):
        make_sink(url, ctx)


def test_loopback_is_refused_unless_allowed_naming_the_setting(tmp_path: Path) -> None:
    closed = context(tmp_path, Egress())
    for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "redis://[::1]:6379?stream=s"):
        with pytest.raises(PolicyRefused, match="--allow-hosts") as refused:
            make_sink(url, closed)
        assert "MODELBUS_ALLOW_HOSTS" in refused.value.message
    with pytest.raises(PolicyRefused, match="loopback"):
        make_source("redis://127.0.0.1:6379?stream=s", closed)
    opened = context(tmp_path, Egress(allow=("127.0.0.0/8", "::1")))
    make_sink("http://127.0.0.1:9/x", opened)
    make_sink("redis://[::1]:6379?stream=s", opened)
    make_sink("http://localhost:9/x", context(tmp_path, Egress(allow=("localhost",))))


def test_the_servers_own_api_is_refused_even_with_loopback_allowed(tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        Egress(allow=("127.0.0.0/8", "*.corp.example"), own_port=8470, own_hosts=("0.0.0.0",)),
    )
    for url in ("http://127.0.0.1:8470/v1/keys", "http://127.0.0.2:8470/v1/keys"):
        with pytest.raises(PolicyRefused, match="own API"):
            make_sink(url, ctx)
    make_sink("http://127.0.0.1:8471/v1/keys", ctx)  # another port: another service
    make_sink("local://jobs", ctx)  # no host at all


def test_public_addresses_and_queue_names_pass(tmp_path: Path) -> None:
    ctx = context(tmp_path, Egress())
    make_sink("http://93.184.215.14/hook", ctx)
    make_sink("local://results", ctx)
    make_sink("memory://results", ctx)


async def test_a_refused_reply_names_its_status_never_its_body(
    tmp_path: Path, replier: tuple[int, list[bytes]]
) -> None:
    port, got = replier
    sink = make_sink(
        f"http://127.0.0.1:{port}/hook", context(tmp_path, Egress(allow=("127.0.0.1",)))
    )
    await sink.open()
    try:
        with pytest.raises(ConnectorError) as failed:
            await sink.publish([OutMessage(id="m1", body=b"{}")])
    finally:
        await sink.close()
    assert got == [b"{}"]
    assert "answered 403 Forbidden" in failed.value.message
    assert LEAK not in failed.value.message and failed.value.permanent


async def test_the_webhook_sink_checks_the_host_again_before_each_post(
    tmp_path: Path, replier: tuple[int, list[bytes]]
) -> None:
    port, got = replier
    # Made under a policy that let the host through; the policy it connects under refuses it
    # (what a name that now resolves elsewhere amounts to).
    sink = WebhookSink(
        f"http://127.0.0.1:{port}/hook", secret=None, timeout_s=5, listener="l", egress=Egress()
    )
    await sink.open()
    try:
        with pytest.raises(ConnectorError, match="loopback") as refused:
            await sink.publish([OutMessage(id="m1", body=b"{}")])
    finally:
        await sink.close()
    assert refused.value.permanent
    assert got == []
