"""The shipped examples, pushed and called over HTTP: hello (Python) and node-sentiment (a
runner written in Node.js)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelbus.client import Client
from tests.support.server import ModelbusServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_hello(server: ModelbusServer, admin: Client) -> None:
    pushed = admin.push(EXAMPLES / "hello", version="1.0.0")
    assert pushed.version == "1.0.0"
    with server.http() as http:
        as_json = http.post("/v1/algo/examples/hello/1.0.0", json={"name": "Ada"}).json()
        as_text = http.post(
            "/v1/models/examples/hello/invoke",
            content="Grace",
            headers={"Content-Type": "text/plain"},
        ).json()
        refused = http.post("/v1/models/examples/hello/invoke", json=[1, 2])
    assert as_json["result"] == {"greeting": "Hello, Ada!"}
    assert as_text["result"] == "Hello, Grace!"
    assert as_text["metadata"]["content_type"] == "text"
    assert refused.status_code == 400
    assert refused.json()["error"]["permanent"] is True


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_sentiment(server: ModelbusServer, admin: Client) -> None:
    admin.push(EXAMPLES / "node-sentiment", version="1.0.0")
    with server.http() as http:
        text = http.post(
            "/v1/algo/examples/node-sentiment/1.*",
            content="What a great, happy day",
            headers={"Content-Type": "text/plain"},
        ).json()
        as_json = http.post(
            "/v1/models/examples/node-sentiment/invoke", json={"text": "slow and broken"}
        ).json()
    assert text["result"]["label"] == "positive"
    assert text["metadata"]["version"] == "1.0.0"
    assert as_json["result"]["label"] == "negative"
