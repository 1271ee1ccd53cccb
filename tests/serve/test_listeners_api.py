"""The listener, run and dead-letter routes on a real server, through HTTP and the SDK."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from modelbus import errors
from modelbus.client import Client
from tests.support.server import ModelbusServer

from .conftest import eventually, publish, receive_all, unique

JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> dict[str, Any]:
    pattern: dict[str, Any] = {"a": ["x"]}
    for _ in range(depth):
        pattern = {"a": pattern}
    return pattern


def echo_listener(name: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": f"local://{name}-in?poll_ms=50",
        "model": "test/echo@1.*",
        "outputs": [f"local://{name}-out"],
        **more,
    }


def run_of(client: Client, message_id: str, listener: str, status: str) -> Any:
    found = client.runs(message_id, listener=listener)
    return found[0] if found[0].status == status else None


def test_a_created_listener_runs_messages_and_records_them(
    server: ModelbusServer, admin: Client
) -> None:
    name = unique("echo")
    created = admin.create_listener(echo_listener(name))
    assert created.name == name
    assert created.definition.model == "test/echo@1.*"
    assert created.status.version == "1.1.0"  # the highest 1.* published

    publish(server.data_dir, f"{name}-in", ("m-1", b'{"n": 1}'), ("m/2 with?odd#chars", b'"two"'))
    first = eventually(lambda: run_of(admin, "m-1", name, "succeeded"))
    assert first.version == "1.1.0"
    assert first.attempts == 1
    assert first.result_location == [f"local://{name}-out"]
    odd = eventually(lambda: run_of(admin, "m/2 with?odd#chars", name, "succeeded"))
    assert odd.output_id

    events = {
        d.attributes["sourcemessageid"]: json.loads(d.body)
        for d in receive_all(server.data_dir, f"{name}-out")
    }
    assert events["m-1"]["data"] == {"n": 1}
    assert events["m/2 with?odd#chars"]["data"] == "two"
    status = eventually(lambda: _status_with(admin, name, succeeded=2))
    assert status.state == "running"
    assert status.counters["received"] == 2

    page = admin.listener_runs(name)
    assert {r.message_id for r in page.items} == {"m-1", "m/2 with?odd#chars"}
    with pytest.raises(errors.RunNotFound):
        admin.runs("never-sent", listener=name)


def _status_with(client: Client, name: str, **counts: int) -> Any:
    status = client.listener_status(name)
    ok = all(status.counters[k] == v for k, v in counts.items())
    return status if ok else None


def test_dead_letters_can_be_inspected_and_redriven_to_another_spec(
    server: ModelbusServer, admin: Client
) -> None:
    name = unique("nover")
    # No 9.* exists: the message waits out its one attempt, then is dead-lettered.
    definition = echo_listener(name, model="test/echo@9.*", retry={"max_attempts": 1})
    admin.create_listener(definition, check=False)  # refused when checked: 9.* is nothing
    assert admin.listener_status(name).version_error
    publish(server.data_dir, f"{name}-in", ("lost-1", b'{"keep": "me"}'), kind="invoice")
    eventually(lambda: run_of(admin, "lost-1", name, "dead_lettered"))

    listed = admin.dead_letters(name).items
    assert len(listed) == 1
    assert listed[0].body_base64 is None  # listings carry no bodies
    assert listed[0].error_type == "VersionNotFound"
    letter = admin.dead_letter(listed[0].id)
    assert base64.b64decode(letter.body_base64 or "") == b'{"keep": "me"}'
    assert letter.attributes["kind"] == "invoice"
    assert letter.model == "test/echo@9.*"

    result = admin.redrive(name, spec="1.0.*", rate_per_s=50)
    assert result.redriven == [letter.id]
    assert result.failed == {}
    assert result.model == "test/echo@1.0.*"
    again = admin.runs("lost-1", listener=name)[0]
    assert again.status == "succeeded"
    assert again.version == "1.0.0"
    [output] = receive_all(server.data_dir, f"{name}-out")
    assert json.loads(output.body)["data"] == {"keep": "me"}
    assert admin.dead_letter(letter.id).redriven_to == "test/echo@1.0.*"
    assert admin.dead_letters(name, include_redriven=False).items == []


def test_pause_resume_and_delete(server: ModelbusServer, admin: Client) -> None:
    name = unique("paused")
    admin.create_listener(echo_listener(name))
    assert admin.pause_listener(name).status.state == "paused"
    assert admin.listener(name).definition.enabled is False
    publish(server.data_dir, f"{name}-in", ("p-1", b"1"))
    assert admin.resume_listener(name).definition.enabled is True
    eventually(lambda: run_of(admin, "p-1", name, "succeeded"))

    admin.delete_listener(name)
    with pytest.raises(errors.ListenerNotFound):
        admin.listener(name)
    assert admin.runs("p-1", listener=name)[0].status == "succeeded"  # records outlive it


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"source": "nosuch://queue"}, "unknown connector scheme"),
        ({"model": "test/echo@one.two"}, "version spec"),
        ({"model": "no-slash"}, "model"),
        ({"filter": {"body": {"n": [{"prefix": 1}]}}}, "filter"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"colour": "blue"}, "unknown field"),
        ({"outputs": ["local://SAME"], "source": "local://SAME"}, "is the source itself"),
        # These three answered 500 or no answer at all.
        ({"filter": {"body": nested(400)}}, "nest at most 32 objects deep"),
        ({"outputs": ["dir:///tmp/in\x00box"]}, "cannot hold a NUL character"),
        ({"filter": {"body": {"n": ["\ud800"]}}}, "\\ud800"),
    ],
)
def test_refused_definitions_say_what_to_change(
    server: ModelbusServer, change: dict[str, Any], says: str
) -> None:
    body = json.dumps({**echo_listener(unique("bad")), **change})  # "\ud800" escaped
    with server.http() as http:
        answer = http.post("/v1/listeners", content=body, headers=JSON)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "DefinitionError"
    assert says in error["message"]


def test_refused_by_its_broker_when_checked(server: ModelbusServer) -> None:
    body = echo_listener(unique("nobroker"))
    body["outputs"] = ["postgresql://postgres@127.0.0.1:9/test?table=nowhere"]
    with server.http() as http:
        answer = http.post("/v1/listeners", json=body)
        assert answer.status_code == 400, answer.text
        assert "cannot open the sink" in answer.json()["error"]["message"]
        unchecked = http.post("/v1/listeners", params={"check": "false"}, json=body)
        assert unchecked.status_code == 201, unchecked.text
        http.delete(f"/v1/listeners/{body['name']}")


def test_put_creates_then_updates_and_conflicts_are_409(
    server: ModelbusServer, admin: Client
) -> None:
    name = unique("put")
    with server.http() as http:
        created = http.put(f"/v1/listeners/{name}", json=echo_listener(name))
        assert created.status_code == 201, created.text
        changed = http.put(f"/v1/listeners/{name}", json=echo_listener(name, max_in_flight=3))
        assert changed.status_code == 200
        assert changed.json()["definition"]["max_in_flight"] == 3
        mismatch = http.put(f"/v1/listeners/{name}", json=echo_listener("other"))
        assert mismatch.status_code == 400
        assert "make them the same" in mismatch.json()["error"]["message"]
        again = http.post("/v1/listeners", json=echo_listener(name))
        assert again.status_code == 409
        assert http.delete(f"/v1/listeners/{name}").status_code == 204
        assert http.delete(f"/v1/listeners/{name}").status_code == 404


def test_bulk_apply_creates_updates_and_prunes(server: ModelbusServer, admin: Client) -> None:
    a, b = unique("bulk-a"), unique("bulk-b")
    first = admin.apply_listeners([echo_listener(a), echo_listener(b)])
    assert sorted(first.created) == sorted([a, b])
    second = admin.apply_listeners([echo_listener(a), echo_listener(b, max_in_flight=2)])
    assert second.unchanged == [a]
    assert second.updated == [b]
    with server.http() as http:
        refused = http.put(
            "/v1/listeners",
            json={"listeners": [echo_listener(a), {**echo_listener(b), "model": "x"}]},
        )
    assert refused.status_code == 400
    assert "listeners[1]" in refused.json()["error"]["message"]
    names = {x.name for x in admin.listeners()}
    assert {a, b} <= names
    pruned = admin.apply_listeners([echo_listener(a)], prune=True)
    assert b in pruned.deleted
    assert b not in {x.name for x in admin.listeners()}
    admin.delete_listener(a)


def test_reads_need_any_key_and_changes_need_listeners_manage(
    server: ModelbusServer, admin: Client
) -> None:
    name = unique("scoped")
    admin.create_listener(echo_listener(name))
    caller = admin.create_key("caller", ["call:*"]).key
    # Changing a listener also needs call on its model (tests/security/test_access.py).
    manager = admin.create_key("manager", ["listeners:manage", "call:test/echo"]).key
    with server.http(caller) as http:
        assert http.get("/v1/listeners").status_code == 200
        assert http.get(f"/v1/listeners/{name}/status").status_code == 200
        assert http.get(f"/v1/listeners/{name}/dead-letters").status_code == 200
        assert http.post(f"/v1/listeners/{name}/pause").status_code == 403
        assert http.post("/v1/listeners", json=echo_listener(unique("x"))).status_code == 403
        assert http.get("/v1/dead-letters/anything").status_code == 403
    with server.http(manager) as http:
        assert http.post(f"/v1/listeners/{name}/pause").status_code == 200
        assert http.delete(f"/v1/listeners/{name}").status_code == 204
    with server.http("mb_0000000000000000_" + "x" * 43) as http:
        assert http.get("/v1/listeners").status_code == 401


def test_algorithmia_user_event_listeners(server: ModelbusServer, admin: Client) -> None:
    name = unique("algo")
    admin.create_listener(echo_listener(name))
    with server.http() as http:
        page = http.get("/v1/users/test/event-listeners", params={"limit": 1000}).json()
        other = http.get("/v1/users/nobody/event-listeners").json()
    [mine] = [x for x in page["results"] if x["name"] == name]
    assert mine["algorithm"] == "test/echo"
    assert mine["version"] == "1.*"
    assert mine["type"] == "local"
    assert mine["status"] == "running"
    assert other["results"] == []
    admin.delete_listener(name)


def test_openapi_documents_the_new_routes(server: ModelbusServer) -> None:
    with server.http() as http:
        paths = http.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/listeners",
        "/v1/listeners/{name}",
        "/v1/listeners/{name}/pause",
        "/v1/listeners/{name}/resume",
        "/v1/listeners/{name}/status",
        "/v1/listeners/{name}/runs",
        "/v1/listeners/{name}/dead-letters",
        "/v1/listeners/{name}/dead-letters/redrive",
        "/v1/dead-letters/{letter_id}",
        "/v1/runs/{message_id}",
        "/v1/users/{user}/event-listeners",
        "/metrics",
    ):
        assert path in paths, path
    assert "ListenerDefinition" in json.dumps(paths["/v1/listeners"]["post"])
