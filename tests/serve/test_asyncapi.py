"""``GET /v1/asyncapi.json`` and ``modelbus listeners asyncapi`` on a real server: every
listener described from its stored definition and its model's schemas, credentials masked,
valid for the official ``@asyncapi/parser``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbus.client import AsyncClient, Client
from tests.support.asyncapi import problems
from tests.support.server import MODELBUS, ModelbusServer, clean_env

from .conftest import unique

PASSWORD = "s3cret-Passw0rd"
TOKEN = "hook-secret-0123456789"


@pytest.fixture
def described(server: ModelbusServer, admin: Client) -> Iterator[dict[str, str]]:
    """Listeners (disabled: nothing runs) on several brokers, one on a model with schemas,
    one on a model that does not exist, with credentials in their URLs; deleted after."""
    names = {k: unique(k) for k in ("strict", "kafka", "gone", "hook")}
    definitions: list[dict[str, Any]] = [
        {
            "name": names["strict"],
            "source": f"amqp://app:{PASSWORD}@127.0.0.1:5672/%2F?queue=in",
            "model": "test/strict@1.0.0",
            "outputs": [f"redis://:{PASSWORD}@127.0.0.1:6379/0?stream=out"],
            "error_sink": "local://dead",
        },
        {
            "name": names["kafka"],
            "source": f"kafka://user:{PASSWORD}@127.0.0.1:9092/orders?security_protocol=SASL_SSL",
            "model": "test/echo@1.*",
            "outputs": [f"https://hooks.example.com/in?secret={TOKEN}"],
            "output_mode": "raw",
        },
        {"name": names["gone"], "source": "local://gone", "model": "test/no-such-model"},
        {"name": names["hook"], "source": f"webhook://gh?secret={TOKEN}", "model": "test/echo"},
    ]
    for definition in definitions:
        admin.create_listener({**definition, "enabled": False}, check=False)
    try:
        yield names
    finally:
        for name in names.values():
            admin.delete_listener(name)


def test_the_document_describes_every_listener(
    server: ModelbusServer, described: dict[str, str]
) -> None:
    with server.http() as http:
        response = http.get("/v1/asyncapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    doc = response.json()
    assert doc["asyncapi"] == "3.0.0"
    assert PASSWORD not in response.text and TOKEN not in response.text

    strict, kafka = described["strict"], described["kafka"]
    source = doc["channels"][f"{strict}.source"]
    assert source["address"] == "in"
    assert source["x-modelbus-url"] == "amqp://***@127.0.0.1:5672/***?queue=***"
    # the model's input schema, from the registry, is the source's payload
    schema = doc["components"]["schemas"][f"{strict}.input"]
    assert schema["required"] == ["text"]
    assert doc["operations"][f"{strict}.receive"]["x-modelbus"]["version"] == "1.0.0"
    result = doc["channels"][f"{strict}.output.0"]["messages"]["result"]
    assert result["payload"]["properties"]["data"] == {
        "$ref": f"#/components/schemas/{strict}.output"
    }
    assert doc["channels"][f"{strict}.errors"]["address"] == "dead"

    receive = doc["operations"][f"{kafka}.receive"]
    assert receive["bindings"]["kafka"]["groupId"]["enum"] == [kafka]
    assert doc["channels"][f"{kafka}.source"]["bindings"]["kafka"]["topic"] == "orders"
    # a model without schemas, and one that does not exist: said so, no payload invented
    raw_input = doc["channels"][f"{kafka}.source"]["messages"]["input"]
    assert "payload" not in raw_input and "declares no input schema" in raw_input["description"]
    gone = doc["channels"][f"{described['gone']}.source"]["messages"]["input"]
    assert "payload" not in gone and "schema is unknown" in gone["description"]
    # a webhook source receives on this very server
    hook = doc["channels"][f"{described['hook']}.source"]
    assert hook["address"] == "/v1/hooks/gh"
    (ref,) = hook["servers"]
    assert doc["servers"][ref["$ref"].rsplit("/", 1)[1]]["host"] == server.url.split("//")[1]

    assert problems(doc) == []


def test_a_reader_gets_the_document_of_redacted_urls(
    server: ModelbusServer, described: dict[str, str]
) -> None:
    with server.http() as http:
        made = http.post("/v1/keys", json={"name": "asyncapi-reader", "scopes": ["call:*"]})
    with server.http(made.json()["key"]) as http:
        response = http.get("/v1/asyncapi.json")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert PASSWORD not in response.text and TOKEN not in response.text
    source = doc["channels"][f"{described['strict']}.source"]
    assert source["x-modelbus-url"] == "amqp://***@127.0.0.1:5672/***?queue=***"
    assert source["address"] == "***"  # the queue's name is part of the URL: a secret
    kafka = doc["channels"][f"{described['kafka']}.source"]
    assert kafka["bindings"]["kafka"]["topic"] == "***"
    assert problems(doc) == []


def test_the_sdk_and_the_cli_give_the_same_document(
    server: ModelbusServer, admin: Client, described: dict[str, str], tmp_path: Path
) -> None:
    from_sdk = admin.asyncapi()
    env = clean_env({"MODELBUS_URL": server.url, "MODELBUS_API_KEY": server.admin_key})
    printed = subprocess.run(
        [MODELBUS, "listeners", "asyncapi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == from_sdk
    target = tmp_path / "asyncapi.json"
    written = subprocess.run(
        [MODELBUS, "listeners", "asyncapi", "--output", str(target)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    assert json.loads(target.read_text()) == from_sdk
    assert f"{described['strict']}.receive" in from_sdk["operations"]


async def test_the_async_sdk_gives_it_too(
    server: ModelbusServer, admin: Client, described: dict[str, str]
) -> None:
    async with AsyncClient(server.url, server.admin_key) as client:
        doc = await client.asyncapi()
    assert doc == admin.asyncapi()
    assert f"{described['gone']}.receive" in doc["operations"]


def test_the_document_needs_a_key(server: ModelbusServer) -> None:
    with server.http(key="not-a-key") as http:
        assert http.get("/v1/asyncapi.json").status_code == 401


def test_the_command_documents_its_flags() -> None:
    shown = subprocess.run(
        [MODELBUS, "listeners", "asyncapi", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    for flag in ("--output", "--url", "--key", "AsyncAPI"):
        assert flag in shown.stdout
