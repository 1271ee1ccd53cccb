"""Access control: every route has a rule, and the running server enforces it for every
scope. Routes are enumerated from the app itself, so a new route without a rule here fails
:func:`test_every_route_has_a_rule` until someone decides who may call it.

Rules:

* ``public``: no key (health, the console's login form and its static assets);
* ``signature``: no API key, an HMAC signature instead (webhooks, see test_webhooks.py);
* ``session``: console pages, a login session made from an API key (else -> login form);
* ``any``: any valid key, whatever its scopes;
* ``admin``, ``models:manage``, ``listeners:manage``: that scope (admin allows everything);
* ``call``: a scope allowing calls of the model in the path (``call:OWNER/NAME``, ``call:*``);
* ``listener`` (console only): ``listeners:manage`` and ``call`` on the listener's model;
* ``read``: model metadata, for model managers and for keys that may call the model.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelbus.config import Settings
from modelbus.store import keys
from modelbus.web.app import create_app
from tests.security.conftest import make_key, store_rows
from tests.support.fixtures import Published
from tests.support.server import ModelbusServer

RULES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/openapi.json"): "any",
    ("GET", "/metrics"): "any",
    ("POST", "/v1/hooks/{name}"): "signature",
    # models
    ("GET", "/v1/models"): "any",  # lists only the models the key may read
    ("GET", "/v1/models/{owner}/{name}"): "read",
    ("GET", "/v1/models/{owner}/{name}/history"): "read",
    ("GET", "/v1/models/{owner}/{name}/versions"): "read",
    ("GET", "/v1/models/{owner}/{name}/builds"): "read",
    ("GET", "/v1/builds/{build}"): "read",  # of the build's model
    ("POST", "/v1/models/{owner}/{name}/publish"): "models:manage",
    ("POST", "/v1/models/{owner}/{name}/versions"): "models:manage",
    # invocations
    ("POST", "/v1/models/{owner}/{name}/invoke"): "call",
    ("POST", "/v1/models/{owner}/{name}/versions/{spec}/invoke"): "call",
    ("POST", "/v1/models/{owner}/{name}/jobs"): "call",
    ("POST", "/v1/models/{owner}/{name}/versions/{spec}/jobs"): "call",
    ("GET", "/v1/jobs/{job_id}"): "any",  # and only the key that made the job, or admin
    # keys
    ("POST", "/v1/keys"): "admin",
    ("GET", "/v1/keys"): "admin",
    ("GET", "/v1/keys/self"): "any",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
    # listeners, runs, dead letters (reading: credentials masked, no message bodies)
    ("GET", "/v1/listeners"): "any",
    # nodes
    ("GET", "/v1/nodes"): "any",
    ("POST", "/v1/listeners"): "listeners:manage",
    ("PUT", "/v1/listeners"): "listeners:manage",
    ("GET", "/v1/listeners/{name}"): "any",
    ("PUT", "/v1/listeners/{name}"): "listeners:manage",
    ("DELETE", "/v1/listeners/{name}"): "listeners:manage",
    ("POST", "/v1/listeners/{name}/pause"): "listeners:manage",
    ("POST", "/v1/listeners/{name}/resume"): "listeners:manage",
    ("GET", "/v1/listeners/{name}/status"): "any",
    ("GET", "/v1/listeners/{name}/history"): "any",
    ("GET", "/v1/flow"): "any",
    ("GET", "/v1/users/{user}/event-listeners"): "any",
    ("GET", "/v1/runs"): "any",
    ("GET", "/v1/runs/{message_id:path}"): "any",
    ("GET", "/v1/listeners/{name}/runs"): "any",
    ("GET", "/v1/listeners/{name}/dead-letters"): "any",
    ("GET", "/v1/dead-letters/{letter_id}"): "listeners:manage",  # has the message body
    ("POST", "/v1/listeners/{name}/dead-letters/redrive"): "listeners:manage",
    ("GET", "/v1/dead-letters"): "any",
    # (and call on each matched listener's model; an empty search is refused: 400)
    ("POST", "/v1/dead-letters/redrive"): "listeners:manage",
    # Algorithmia
    ("POST", "/v1/algo/{owner}/{name}"): "call",
    ("POST", "/v1/algo/{owner}/{name}/{version}"): "call",
    ("GET", "/v1/algorithms/{owner}/{name}"): "read",
    ("POST", "/v1/algorithms/{owner}"): "models:manage",
    ("PUT", "/v1/algorithms/{owner}/{name}"): "models:manage",
    ("POST", "/v1/algorithms/{owner}/{name}/versions"): "models:manage",
    ("DELETE", "/v1/algorithms/{owner}/{name}"): "models:manage",
    ("POST", "/v1/users/{user}/event-listeners"): "listeners:manage",
    ("GET", "/v1/users/{user}/event-listeners/{listener_id}"): "any",
    ("PUT", "/v1/users/{user}/event-listeners/{listener_id}"): "listeners:manage",
    ("DELETE", "/v1/users/{user}/event-listeners/{listener_id}"): "listeners:manage",
    ("GET", "/v1/algorithms/{owner}/{name}/versions"): "read",
    ("GET", "/v1/algorithms/{owner}/{name}/versions/{version}"): "read",
    ("GET", "/v1/algorithms/{owner}/{name}/builds"): "read",
    ("GET", "/v1/algorithms/{owner}/{name}/builds/{build_id}"): "read",
    ("GET", "/v1/algorithms/{owner}/{name}/builds/{build_id}/logs"): "read",
    # AsyncAPI (every listener, URLs redacted)
    ("GET", "/v1/asyncapi.json"): "any",
    # Open Inference Protocol v2 (errors in its own {"error": "..."} shape)
    ("GET", "/v2"): "any",
    ("GET", "/v2/health/live"): "any",
    ("GET", "/v2/health/ready"): "any",
    ("GET", "/v2/models/{owner}/{name}"): "read",
    ("GET", "/v2/models/{owner}/{name}/ready"): "read",
    ("GET", "/v2/models/{owner}/{name}/versions/{spec}"): "read",
    ("GET", "/v2/models/{owner}/{name}/versions/{spec}/ready"): "read",
    ("POST", "/v2/models/{owner}/{name}/infer"): "call",
    ("POST", "/v2/models/{owner}/{name}/versions/{spec}/infer"): "call",
    # anything else under /v2: 404 in OIP's shape to everyone (no model is reached)
    **{
        (m, "/v2/{rest:path}"): "unrouted"
        for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    },
    # the console
    ("GET", "/console/login"): "public",
    ("POST", "/console/login"): "public",
    ("GET", "/console/static/{name:path}"): "public",
}
CONSOLE = "/console"

# Scopes -> which rules they satisfy (for the model test/echo in the paths).
# A key per entry (an entry with a space holds several scopes).
LISTENER_MANAGER = "listeners:manage call:test/echo"
SCOPES = (
    "call:test/echo",
    "call:other/model",
    "call:*",
    "models:manage",
    "listeners:manage",
    LISTENER_MANAGER,
)
ALLOWED = {
    "any": {*SCOPES, "admin"},
    "admin": {"admin"},
    "models:manage": {"models:manage", "admin"},
    "listeners:manage": {"listeners:manage", LISTENER_MANAGER, "admin"},
    "call": {"call:test/echo", "call:*", LISTENER_MANAGER, "admin"},
    "read": {"call:test/echo", "call:*", "models:manage", LISTENER_MANAGER, "admin"},
    # Changing a listener: listeners:manage and call on its model (test/echo). The /v1
    # matrix cannot show the second half (its requests name no stored listener and send
    # empty bodies, refused before); test_managing_a_listener_needs_call_on_its_model does.
    "listener": {LISTENER_MANAGER, "admin"},
}


def app_routes() -> Iterator[tuple[str, str]]:
    """(method, path) of every route of the app, HEAD aside."""
    app = create_app(Settings.from_env({}, data_dir=Path("/nonexistent")))

    def walk(routes: list[object]) -> Iterator[object]:
        for route in routes:
            inner = getattr(route, "original_router", None)  # FastAPI's included routers
            yield from walk(inner.routes) if inner is not None else (route,)

    for route in walk(list(app.routes)):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, str(getattr(route, "path", ""))


ROUTES = sorted(set(app_routes()))


def rule_of(method: str, path: str) -> str | None:
    if path.startswith(CONSOLE) and (method, path) not in RULES:
        return "session"
    return RULES.get((method, path))


def test_every_route_has_a_rule() -> None:
    assert len(ROUTES) > 60
    missing = [f"{m} {p}" for m, p in ROUTES if rule_of(m, p) is None]
    assert not missing, f"routes without an access rule in {__file__}: {missing}"
    stale = [f"{m} {p}" for m, p in RULES if (m, p) not in ROUTES]
    assert not stale, f"rules for routes that no longer exist: {stale}"


def concrete(path: str, published: Published) -> str:
    values = {
        "owner": "test",
        "name": "echo",
        "spec": "1.0.0",
        "version": "1.0.0",
        "build": published.echo_builds["1.0.0"],
        "build_id": published.echo_builds["1.0.0"],
        "job_id": uuid.uuid4().hex,
        "key_id": "ffffffffffffffff",
        "user": "test",
        "listener_id": "no-such-listener",
        "letter_id": uuid.uuid4().hex,
        "message_id:path": "no-such-message",
        "rest:path": "nowhere",
        "name:path": "console.css",
    }
    return re.sub(r"\{([^}]+)\}", lambda m: values[m[1]], path)


def send(server: ModelbusServer, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = b"{}" if method in ("POST", "PUT") else None
    headers = {"content-type": "application/json", **headers}
    with httpx.Client(base_url=server.url, timeout=60.0, follow_redirects=False) as http:
        return http.request(method, path, content=body, headers=headers)


@pytest.fixture(scope="module")
def scoped_keys(modelbus_server: ModelbusServer, published: Published) -> dict[str, str]:
    server = modelbus_server
    found = {scope: make_key(server, *scope.split(), name=f"access {scope}") for scope in SCOPES}
    found["admin"] = server.admin_key
    return found


API_ROUTES = [(m, p) for m, p in ROUTES if rule_of(m, p) not in ("public", "session")]


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
def test_each_route_enforces_its_rule_for_each_scope(
    server: ModelbusServer,
    published: Published,
    scoped_keys: dict[str, str],
    method: str,
    path: str,
) -> None:
    rule = rule_of(method, path)
    url = concrete(path, published)
    if (method, path) == ("DELETE", "/v1/algorithms/{owner}/{name}"):
        url = url.replace("/echo", "/no-such-model")  # allowed keys would delete test/echo
    if rule == "signature":
        # No API key is wanted, and one does not replace the signature.
        for headers in ({}, {"Authorization": f"Bearer {server.admin_key}"}):
            assert send(server, method, url, headers).status_code in (401, 404)
        return
    if rule == "unrouted":
        for headers in ({}, {"Authorization": f"Bearer {server.admin_key}"}):
            answer = send(server, method, url, headers)
            assert answer.status_code == 404 and isinstance(answer.json()["error"], str)
        return
    for headers in ({}, {"Authorization": "Bearer mb_0000000000000000_" + "A" * 43}):
        answer = send(server, method, url, headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert error_code(answer, path) in ("Unauthenticated", None)
    assert rule is not None
    for scope, key in scoped_keys.items():
        answer = send(server, method, url, {"Authorization": f"Bearer {key}"})
        if scope in ALLOWED[rule]:
            assert answer.status_code not in (401, 403), (scope, answer.text)
        else:
            assert answer.status_code == 403, (scope, answer.text)
            assert error_code(answer, path) in ("Forbidden", None)


def error_code(answer: httpx.Response, path: str) -> str | None:
    """The error's code in modelbus's shape; None for OIP's (under /v2), whose error is
    a bare message (checked to be one)."""
    error = answer.json()["error"]
    if path.startswith("/v2"):
        assert isinstance(error, str) and error, answer.text
        return None
    return str(error["code"])


CONSOLE_ROUTES = [(m, p) for m, p in ROUTES if rule_of(m, p) == "session"]


@pytest.mark.parametrize(
    ("method", "path"), CONSOLE_ROUTES, ids=[f"{m} {p}" for m, p in CONSOLE_ROUTES]
)
def test_console_pages_need_a_session_not_just_a_key(
    server: ModelbusServer, published: Published, method: str, path: str
) -> None:
    url = concrete(path, published)
    for headers in ({}, {"Authorization": f"Bearer {server.admin_key}"}):
        answer = send(server, method, url, headers)
        assert answer.status_code in (303, 403), answer.text[:300]
        if answer.status_code == 303:
            # /console itself forwards to the models page, which asks for a login.
            expected = "/console/models" if path == CONSOLE else "/console/login"
            assert answer.headers["location"].startswith(expected)


def test_keys_are_stored_hashed_and_compared_in_constant_time(server: ModelbusServer) -> None:
    key = make_key(server, "call:*", name="hashed")
    key_id, secret = re.fullmatch(r"mb_([0-9a-f]{16})_(.+)", key).groups()  # type: ignore[union-attr]
    (row,) = store_rows(server, f"SELECT * FROM api_keys WHERE id = '{key_id}'")
    assert secret not in str(row) and key not in str(row)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    # Nothing in the store holds a key's secret, for any key (the admin key included).
    dump = str(list(store_rows(server, "SELECT * FROM api_keys")))
    # (the secret is URL-safe base64, which may hold "_": split after the 16-digit id)
    admin_secret = server.admin_key[len("mb_") + 16 + 1 :]
    assert len(admin_secret) >= 40 and admin_secret not in dump
    # The comparison is hmac.compare_digest, never ==, in the one place keys are checked.
    source = inspect.getsource(keys.KeyStore.verify)
    assert "hmac.compare_digest(" in source
    assert not re.search(r"secret_hash\s*[!=]=", source)


def test_a_revoked_key_stops_at_once(server: ModelbusServer) -> None:
    key = make_key(server, "admin", name="revoked soon")
    key_id = key.split("_")[1]
    with server.http(key) as http:
        assert http.get("/v1/keys/self").status_code == 200
        with server.http() as admin:
            assert admin.delete(f"/v1/keys/{key_id}").status_code == 200
        # The very next request, on the same connection, is refused; so is a key with the
        # right id and a wrong secret.
        refused = http.get("/v1/keys/self")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "Unauthenticated"
        assert http.get("/v1/keys").status_code == 401
    forged = f"mb_{key_id}_" + "B" * 43
    with server.http(forged) as http:
        assert http.get("/v1/keys/self").status_code == 401


def listener(name: str, model: str = "test/echo@1.0.0") -> dict[str, object]:
    return {"name": name, "source": f"memory://{name}-in", "model": model}


def assert_lacks(answer: httpx.Response, scope: str) -> None:
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "Forbidden" and f"lacks scope '{scope}'" in error["message"], error


def test_managing_a_listener_needs_call_on_its_model(server: ModelbusServer) -> None:
    name = f"bound-{uuid.uuid4().hex[:8]}"
    managers_only = make_key(server, "listeners:manage", name="listeners only")
    other_caller = make_key(server, "listeners:manage", "call:other/model", name="other caller")
    echo_caller = make_key(server, "listeners:manage", "call:test/echo", name="echo caller")
    for key in (managers_only, other_caller):
        with server.http(key) as http:
            assert_lacks(
                http.post("/v1/listeners?check=false", json=listener(name)), "call:test/echo"
            )
            assert_lacks(
                http.put(f"/v1/listeners/{name}?check=false", json=listener(name)), "call:test/echo"
            )
            applied = http.put("/v1/listeners?check=false", json={"listeners": [listener(name)]})
            assert_lacks(applied, "call:test/echo")
    with server.http(echo_caller) as http:
        created = http.post("/v1/listeners?check=false", json=listener(name))
        assert created.status_code == 201, created.text
        # Rebinding it to a model this key may not call is refused, and changes nothing.
        moved = http.put(
            f"/v1/listeners/{name}?check=false", json=listener(name, "test/strict@1.0.0")
        )
        assert_lacks(moved, "call:test/strict")
        assert http.get(f"/v1/listeners/{name}").json()["definition"]["model"] == "test/echo@1.0.0"
    # A key that may not call its model can neither drive nor delete it.
    with server.http(managers_only) as http:
        for method, path in (
            ("POST", f"/v1/listeners/{name}/pause"),
            ("POST", f"/v1/listeners/{name}/resume"),
            ("DELETE", f"/v1/listeners/{name}"),
        ):
            assert_lacks(http.request(method, path), "call:test/echo")
        redrive = http.post(f"/v1/listeners/{name}/dead-letters/redrive", json={})
        assert_lacks(redrive, "call:test/echo")
        # Pruning would delete every listener, and this key may call none of their models.
        pruned = http.put("/v1/listeners?check=false", json={"listeners": [], "prune": True})
        assert pruned.status_code == 403 and "lacks scope 'call:" in pruned.text, pruned.text
        # nor through Algorithmia's event-listener API
        event_listener = {
            "sourceType": "AmazonSQS",
            "sourceURI": "sqs://orders",
            "algoOwner": "test",
            "algoName": "echo",
            "algoVersion": "1.0",
        }
        assert_lacks(
            http.post("/v1/users/test/event-listeners", json=event_listener), "call:test/echo"
        )
    with server.http(echo_caller) as http:
        assert http.delete(f"/v1/listeners/{name}").status_code == 204
