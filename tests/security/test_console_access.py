"""Console access: every console route has a rule, and a logged-in session enforces it for
every scope, as test_access.py checks the ``/v1`` routes with API keys. Routes are
enumerated from the app itself, so a new console route without a row in :data:`RULES` (and
a :func:`target` saying how to exercise it) fails :func:`test_every_console_route_has_a_rule`.

The requests are a browser's, made with plain httpx against the real ``modelbus serve``:
log in through the form (its login token, then the session cookie), and post forms with the
session's CSRF token. Rules (the API's, in test_access.py):

* ``public``: no session (the login form, the static files);
* ``any``: any logged-in key, whatever its scopes;
* ``read``: model metadata, for model managers and keys that may call the model;
* ``call``: ``call:test/echo``, ``call:*`` (the model of the paths is test/echo);
* ``listeners:manage``: that scope (``admin`` allows everything);
* ``listener``: changing a listener: ``listeners:manage`` and ``call`` on its model.

A refused request answers the "Not allowed" page (403) with the API's message saying what
is missing, shows none of what the route guards, and changes nothing (seen through the API);
an allowed one answers as it should and does what it says.
"""

from __future__ import annotations

import contextlib
import html
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import httpx
import pytest

from modelbus.client import Client
from modelbus.errors import ListenerNotFound
from tests.security.conftest import make_key
from tests.security.test_access import ALLOWED, ROUTES, SCOPES, scoped_keys
from tests.security.test_access import RULES as API_RULES
from tests.serve.conftest import eventually, publish, unique
from tests.support.fixtures import Published
from tests.support.server import ModelbusServer

__all__ = ["scoped_keys"]

PREFIX = "/console"

RULES: dict[tuple[str, str], str] = {
    ("GET", "/console/login"): "public",
    ("POST", "/console/login"): "public",
    ("GET", "/console/static/{name:path}"): "public",
    ("GET", "/console"): "any",  # forwards to the models page
    ("POST", "/console/logout"): "any",
    ("GET", "/console/{rest:path}"): "any",  # an unknown page: 404, once logged in
    ("GET", "/console/api"): "any",
    ("GET", "/console/openapi.json"): "any",
    # models
    ("GET", "/console/models"): "any",  # lists only the models the key may read
    ("GET", "/console/models/{owner}/{name}"): "read",
    ("GET", "/console/builds/{build}"): "read",
    ("GET", "/console/models/{owner}/{name}/versions/{version}"): "read",
    ("GET", "/console/models/{owner}/{name}/history"): "read",
    ("POST", "/console/models/{owner}/{name}/try"): "call",
    # listeners, runs, dead letters (bodies only for listeners:manage)
    ("GET", "/console/runs"): "any",
    ("GET", "/console/listeners"): "any",
    ("GET", "/console/listeners/live"): "any",
    ("GET", "/console/listeners/new"): "listeners:manage",
    ("POST", "/console/listeners/new"): "listener",
    ("GET", "/console/listeners/{name}"): "any",
    ("GET", "/console/listeners/{name}/history"): "any",
    # the flow map: what GET /v1/listeners shows every key, drawn
    ("GET", "/console/flow"): "any",
    ("GET", "/console/flow/live"): "any",
    # API keys
    ("GET", "/console/keys"): "admin",
    ("POST", "/console/keys"): "admin",
    ("GET", "/console/keys/{key_id}/revoke"): "admin",
    ("POST", "/console/keys/{key_id}/revoke"): "admin",
    ("GET", "/console/listeners/{name}/edit"): "listeners:manage",
    ("POST", "/console/listeners/{name}/edit"): "listener",
    ("POST", "/console/listeners/{name}/pause"): "listener",
    ("POST", "/console/listeners/{name}/resume"): "listener",
    ("GET", "/console/listeners/{name}/delete"): "listeners:manage",
    ("POST", "/console/listeners/{name}/delete"): "listener",
    ("GET", "/console/dead-letters"): "any",
    ("GET", "/console/listeners/{name}/dead-letters"): "any",
    ("POST", "/console/dead-letters/redrive"): "listener",
    ("GET", "/console/dead-letters/redrive-all"): "listeners:manage",
    ("POST", "/console/dead-letters/redrive-all"): "listener",
}

# The /v1 route each console route is thin over: the console asks the scope the API asks.
TWINS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/console/openapi.json"): ("GET", "/openapi.json"),
    ("GET", "/console/models"): ("GET", "/v1/models"),
    ("GET", "/console/models/{owner}/{name}"): ("GET", "/v1/models/{owner}/{name}"),
    ("GET", "/console/builds/{build}"): ("GET", "/v1/builds/{build}"),
    ("POST", "/console/models/{owner}/{name}/try"): (
        "POST",
        "/v1/models/{owner}/{name}/versions/{spec}/invoke",
    ),
    ("GET", "/console/runs"): ("GET", "/v1/runs"),
    ("GET", "/console/dead-letters"): ("GET", "/v1/dead-letters"),
    ("GET", "/console/listeners"): ("GET", "/v1/listeners"),
    ("GET", "/console/listeners/live"): ("GET", "/v1/listeners/{name}/status"),
    ("POST", "/console/listeners/new"): ("POST", "/v1/listeners"),
    ("GET", "/console/listeners/{name}"): ("GET", "/v1/listeners/{name}"),
    ("POST", "/console/listeners/{name}/edit"): ("PUT", "/v1/listeners/{name}"),
    ("POST", "/console/listeners/{name}/pause"): ("POST", "/v1/listeners/{name}/pause"),
    ("POST", "/console/listeners/{name}/resume"): ("POST", "/v1/listeners/{name}/resume"),
    ("POST", "/console/listeners/{name}/delete"): ("DELETE", "/v1/listeners/{name}"),
    ("GET", "/console/listeners/{name}/dead-letters"): (
        "GET",
        "/v1/listeners/{name}/dead-letters",
    ),
    ("POST", "/console/dead-letters/redrive"): (
        "POST",
        "/v1/listeners/{name}/dead-letters/redrive",
    ),
    ("POST", "/console/dead-letters/redrive-all"): ("POST", "/v1/dead-letters/redrive"),
    ("GET", "/console/listeners/{name}/history"): ("GET", "/v1/listeners/{name}/history"),
    ("GET", "/console/models/{owner}/{name}/history"): (
        "GET",
        "/v1/models/{owner}/{name}/history",
    ),
    ("GET", "/console/flow/live"): ("GET", "/v1/flow"),
    ("GET", "/console/keys"): ("GET", "/v1/keys"),
    ("POST", "/console/keys"): ("POST", "/v1/keys"),
    ("POST", "/console/keys/{key_id}/revoke"): ("DELETE", "/v1/keys/{key_id}"),
}

# What a refusal says, by rule: the API's own message (KeyInfo.require, reader_of_model).
REFUSALS = {
    "read": "may neither manage models nor call test/echo",
    "call": "lacks scope 'call:test/echo'",
    "listeners:manage": "lacks scope 'listeners:manage'",
    "admin": "API keys are managed with an admin key",
    # (the first scope the key lacks: listeners:manage, else the call on the model)
    "listener": "lacks scope 'listeners:manage'|lacks scope 'call:test/echo'",
}

CONSOLE_ROUTES = sorted((m, p) for m, p in ROUTES if p == PREFIX or p.startswith(PREFIX + "/"))
GUARDED = [route for route in CONSOLE_ROUTES if RULES.get(route) != "public"]
KEYS = (*SCOPES, "admin")


# --- a browser's session --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Console:
    """A logged-in browser: the session cookie (in ``http``) and the session's CSRF token."""

    http: httpx.Client
    csrf_token: str

    def send(
        self,
        method: str,
        url: str,
        form: Mapping[str, str | list[str]],
        *,
        csrf_token: str | None = None,
    ) -> httpx.Response:
        """GET ``url``, or post ``form`` to it with the session's CSRF token (or another)."""
        if method == "GET":
            return self.http.get(url)
        token = self.csrf_token if csrf_token is None else csrf_token
        return self.http.request(method, url, data={"csrf_token": token, **form})


def hidden_field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found, f"no {name} field in:\n{page[:2000]}"
    return html.unescape(found[1])


@contextlib.contextmanager
def logged_in(server: ModelbusServer, key: str) -> Iterator[Console]:
    """A session made through the login form, as a browser makes it."""
    with httpx.Client(base_url=server.url, timeout=120.0, follow_redirects=False) as http:
        token = hidden_field(http.get(f"{PREFIX}/login").text, "login_token")
        form = {"api_key": key, "login_token": token, "next": f"{PREFIX}/listeners"}
        answer = http.post(f"{PREFIX}/login", data=form)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"{PREFIX}/listeners"
        page = http.get(f"{PREFIX}/listeners")
        assert page.status_code == 200, page.text
        yield Console(http=http, csrf_token=hidden_field(page.text, "csrf_token"))


def text_of(answer: httpx.Response) -> str:
    return html.unescape(answer.text)


# --- what the routes act on -----------------------------------------------------------------


class LostListener:
    """A listener whose every message is dead-lettered (no ``test/echo`` 9.*, one attempt);
    redriving on 1.0.0 succeeds."""

    def __init__(self, server: ModelbusServer, admin: Client) -> None:
        self.server, self.admin = server, admin
        self.name = unique("console-lost")
        admin.create_listener(
            {
                "name": self.name,
                "source": f"local://{self.name}-in?poll_ms=50",
                "model": "test/echo@9.*",
                "retry": {"max_attempts": 1},
            },
            check=False,  # 9.* resolves to nothing: refused unless unchecked
        )

    def letter(self, body: bytes = b'{"lost": true}') -> tuple[str, str]:
        """``(message id, dead letter id)`` of a new message, once it is dead-lettered."""
        message_id = f"lost-{uuid.uuid4().hex[:10]}"
        publish(self.server.data_dir, f"{self.name}-in", (message_id, body))

        def found() -> str:
            items = self.admin.dead_letters(self.name).items
            return next((d.id for d in items if d.message_id == message_id), "")

        return message_id, eventually(found)


@pytest.fixture(scope="module")
def lost(modelbus_server: ModelbusServer, admin: Client) -> Iterator[LostListener]:
    made = LostListener(modelbus_server, admin)
    yield made
    admin.delete_listener(made.name)


@dataclass(kw_only=True)
class World:
    """The server as one test finds it, with listeners made for it (deleted afterwards)."""

    server: ModelbusServer
    admin: Client
    published: Published
    lost: LostListener
    made: list[str] = field(default_factory=list)

    def listener(self, *, enabled: bool = True) -> str:
        """A new listener on ``test/echo@1.0.0`` (paused unless ``enabled``)."""
        name = self.name_for_new()
        self.admin.create_listener(
            {
                "name": name,
                "source": f"local://{name}-in?poll_ms=50",
                "model": "test/echo@1.0.0",
                "enabled": enabled,
            }
        )
        return name

    def name_for_new(self) -> str:
        name = unique("console")
        self.made.append(name)
        return name

    def exists(self, name: str) -> bool:
        try:
            self.admin.listener(name)
        except ListenerNotFound:
            return False
        return True

    def invocations(self) -> float:
        """Calls of test/echo since the server started (its ``/metrics``)."""
        pattern = re.compile(r'^modelbus_version_invocations_total\{[^}]*model="test/echo"')
        lines = self.admin.metrics().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if pattern.match(line))

    def clean_up(self) -> None:
        for name in self.made:
            with contextlib.suppress(ListenerNotFound):
                self.admin.delete_listener(name)


@pytest.fixture
def world(
    server: ModelbusServer, admin: Client, published: Published, lost: LostListener
) -> Iterator[World]:
    made = World(server=server, admin=admin, published=published, lost=lost)
    try:
        yield made
    finally:
        made.clean_up()


def _no_state() -> object:
    return None


@dataclass(frozen=True, kw_only=True)
class Target:
    """One request to a console route, what an allowed one answers, and what it changes.

    ``state`` reads, through the API, what the request could change: a refused request must
    leave it as it was, an allowed one must change it if and only if ``changes``. ``shows``
    is in the allowed answer and must not be in a refused one.
    """

    url: str
    status: int = 200
    form: Mapping[str, str | list[str]] = field(default_factory=dict)
    location: str | None = None
    shows: str | None = None
    state: Callable[[], object] = _no_state
    changes: bool = False


TARGETS: dict[tuple[str, str], Callable[[World], Target]] = {}


def target(
    method: str, path: str
) -> Callable[[Callable[[World], Target]], Callable[[World], Target]]:
    """Register how a test exercises the console route ``method path``."""

    def register(make: Callable[[World], Target]) -> Callable[[World], Target]:
        TARGETS[(method, path)] = make
        return make

    return register


@target("GET", "/console")
def _home(world: World) -> Target:
    return Target(url=PREFIX, status=303, location=f"{PREFIX}/models")


@target("POST", "/console/logout")
def _logout(world: World) -> Target:
    return Target(url=f"{PREFIX}/logout", status=303, location=f"{PREFIX}/login")


@target("GET", "/console/{rest:path}")
def _unknown(world: World) -> Target:
    return Target(url=f"{PREFIX}/no/such/page", status=404, shows="no console page")


@target("GET", "/console/api")
def _reference(world: World) -> Target:
    return Target(url=f"{PREFIX}/api", shows="/v1/listeners/{name}/dead-letters/redrive")


@target("GET", "/console/openapi.json")
def _openapi(world: World) -> Target:
    return Target(url=f"{PREFIX}/openapi.json", shows='"openapi"')


@target("GET", "/console/models")
def _models(world: World) -> Target:
    return Target(url=f"{PREFIX}/models", shows="Models")


def _short(build: str) -> str:
    return build.removeprefix("sha256:")[:12]


@target("GET", "/console/models/{owner}/{name}")
def _model(world: World) -> Target:
    build = world.published.echo_builds["2.0.0"]
    return Target(url=f"{PREFIX}/models/test/echo", shows=_short(build))


@target("GET", "/console/builds/{build}")
def _build(world: World) -> Target:
    build = world.published.echo_builds["1.0.0"]
    return Target(url=f"{PREFIX}/builds/{build}", shows=build)


@target("POST", "/console/models/{owner}/{name}/try")
def _try(world: World) -> Target:
    marker = uuid.uuid4().hex
    return Target(
        url=f"{PREFIX}/models/test/echo/try",
        form={"version": "1.0.0", "kind": "json", "input": f'{{"marker": "{marker}"}}'},
        shows=marker,
        state=world.invocations,
        changes=True,
    )


@target("GET", "/console/runs")
def _runs(world: World) -> Target:
    return Target(url=f"{PREFIX}/runs", shows="message id")


@target("GET", "/console/listeners")
def _listeners(world: World) -> Target:
    return Target(url=f"{PREFIX}/listeners", shows=world.listener())


@target("GET", "/console/listeners/live")
def _live(world: World) -> Target:
    return Target(url=f"{PREFIX}/listeners/live", shows=world.listener())


@target("GET", "/console/listeners/new")
def _new_form(world: World) -> Target:
    return Target(url=f"{PREFIX}/listeners/new", shows='name="source"')


@target("POST", "/console/listeners/new")
def _create(world: World) -> Target:
    name = world.name_for_new()
    return Target(
        url=f"{PREFIX}/listeners/new",
        form={
            "name": name,
            "source": f"local://{name}-in?poll_ms=50",
            "model": "test/echo@1.0.0",
            "enabled": "on",
            "extend_lease": "on",
        },
        status=303,
        location=f"{PREFIX}/listeners/{name}?done=created&name={name}",
        state=lambda: world.exists(name),
        changes=True,
    )


@target("GET", "/console/listeners/{name}")
def _listener(world: World) -> Target:
    name = world.listener()
    return Target(url=f"{PREFIX}/listeners/{name}", shows=f"local://{name}-in")


@target("GET", "/console/listeners/{name}/edit")
def _edit_form(world: World) -> Target:
    name = world.listener()
    return Target(url=f"{PREFIX}/listeners/{name}/edit", shows=f"local://{name}-in")


@target("POST", "/console/listeners/{name}/edit")
def _save(world: World) -> Target:
    name = world.listener()
    return Target(
        url=f"{PREFIX}/listeners/{name}/edit",
        form={
            "source": f"local://{name}-in?poll_ms=50",
            "model": "test/echo@1.0.0",
            "max_in_flight": "7",
            "enabled": "on",
            "extend_lease": "on",
        },
        status=303,
        location=f"{PREFIX}/listeners/{name}?done=updated&name={name}",
        state=lambda: world.admin.listener(name).definition.max_in_flight,
        changes=True,
    )


@target("POST", "/console/listeners/{name}/pause")
def _pause(world: World) -> Target:
    name = world.listener()
    return Target(
        url=f"{PREFIX}/listeners/{name}/pause",
        status=303,
        location=f"{PREFIX}/listeners/{name}?done=paused&name={name}",
        state=lambda: world.admin.listener(name).definition.enabled,
        changes=True,
    )


@target("POST", "/console/listeners/{name}/resume")
def _resume(world: World) -> Target:
    name = world.listener(enabled=False)
    return Target(
        url=f"{PREFIX}/listeners/{name}/resume",
        status=303,
        location=f"{PREFIX}/listeners/{name}?done=resumed&name={name}",
        state=lambda: world.admin.listener(name).definition.enabled,
        changes=True,
    )


@target("GET", "/console/listeners/{name}/delete")
def _confirm_delete(world: World) -> Target:
    name = world.listener()
    return Target(
        url=f"{PREFIX}/listeners/{name}/delete",
        shows=f"Delete listener {name}",
        state=lambda: world.exists(name),
    )


@target("POST", "/console/listeners/{name}/delete")
def _delete(world: World) -> Target:
    name = world.listener()
    return Target(
        url=f"{PREFIX}/listeners/{name}/delete",
        status=303,
        location=f"{PREFIX}/listeners?done=deleted&name={name}",
        state=lambda: world.exists(name),
        changes=True,
    )


@target("GET", "/console/dead-letters")
def _dead_letters_index(world: World) -> Target:
    return Target(url=f"{PREFIX}/dead-letters", shows=world.lost.name)


@target("GET", "/console/listeners/{name}/dead-letters")
def _dead_letters(world: World) -> Target:
    message_id, _ = world.lost.letter()
    return Target(url=f"{PREFIX}/listeners/{world.lost.name}/dead-letters", shows=message_id)


@target("POST", "/console/dead-letters/redrive")
def _redrive(world: World) -> Target:
    _, letter_id = world.lost.letter()
    return Target(
        url=f"{PREFIX}/dead-letters/redrive",
        form={"ids": [letter_id], "spec": "1.0.0"},
        shows="1 succeeded",
        state=lambda: world.admin.dead_letter(letter_id).redriven_to,
        changes=True,
    )


@target("GET", "/console/dead-letters/redrive-all")
def _confirm_redrive_all(world: World) -> Target:
    message_id, _ = world.lost.letter()
    return Target(
        url=f"{PREFIX}/dead-letters/redrive-all?listener={world.lost.name}&message_id={message_id}",
        shows="Redrive 1 dead letter?",
    )


@target("POST", "/console/dead-letters/redrive-all")
def _redrive_all(world: World) -> Target:
    message_id, letter_id = world.lost.letter()
    return Target(
        url=f"{PREFIX}/dead-letters/redrive-all",
        form={"listener": world.lost.name, "message_id": message_id, "spec": "1.0.0"},
        shows="1 succeeded",
        state=lambda: world.admin.dead_letter(letter_id).redriven_to,
        changes=True,
    )


@target("GET", "/console/models/{owner}/{name}/versions/{version}")
def _version(world: World) -> Target:
    return Target(url=f"{PREFIX}/models/test/echo/versions/1.0.0", shows="/versions/1.0.0/invoke")


@target("GET", "/console/models/{owner}/{name}/history")
def _model_history(world: World) -> Target:
    return Target(url=f"{PREFIX}/models/test/echo/history", shows='"test/echo"')


@target("GET", "/console/listeners/{name}/history")
def _listener_history(world: World) -> Target:
    name = world.listener()
    return Target(url=f"{PREFIX}/listeners/{name}/history", shows=name)


@target("GET", "/console/flow")
def _flow(world: World) -> Target:
    return Target(url=f"{PREFIX}/flow", shows=world.listener())


@target("GET", "/console/flow/live")
def _flow_live(world: World) -> Target:
    return Target(url=f"{PREFIX}/flow/live", shows=world.listener())


def _key_names(world: World) -> list[str]:
    with world.server.http() as admin:
        return sorted(k["name"] for k in admin.get("/v1/keys").json())


def _revoked(world: World, key_id: str) -> bool:
    with world.server.http() as admin:
        keys = admin.get("/v1/keys").json()
        return any(k["id"] == key_id and k["revoked_at"] is not None for k in keys)


@target("GET", "/console/keys")
def _keys(world: World) -> Target:
    return Target(url=f"{PREFIX}/keys", shows="bootstrap admin")


@target("POST", "/console/keys")
def _create_key(world: World) -> Target:
    name = unique("console-key")
    return Target(
        url=f"{PREFIX}/keys",
        form={"name": name, "scopes": ["call:*"]},
        status=201,
        shows=name,
        state=lambda: _key_names(world),
        changes=True,
    )


@target("GET", "/console/keys/{key_id}/revoke")
def _confirm_revoke(world: World) -> Target:
    key_id = make_key(world.server, "call:*", name=unique("to revoke")).split("_")[1]
    return Target(
        url=f"{PREFIX}/keys/{key_id}/revoke",
        shows=key_id,
        state=lambda: _revoked(world, key_id),
    )


@target("POST", "/console/keys/{key_id}/revoke")
def _revoke_key(world: World) -> Target:
    key_id = make_key(world.server, "call:*", name=unique("revoked")).split("_")[1]
    return Target(
        url=f"{PREFIX}/keys/{key_id}/revoke",
        status=303,
        location=f"{PREFIX}/keys?revoked={key_id}",
        state=lambda: _revoked(world, key_id),
        changes=True,
    )


# --- the tests ------------------------------------------------------------------------------


def test_every_console_route_has_a_rule() -> None:
    assert len(CONSOLE_ROUTES) > 20
    missing = [f"{m} {p}" for m, p in CONSOLE_ROUTES if (m, p) not in RULES]
    assert not missing, f"console routes without an access rule in {__file__}: {missing}"
    untested = [f"{m} {p}" for m, p in GUARDED if (m, p) not in TARGETS]
    assert not untested, f"console routes without a target in {__file__}: {untested}"
    stale = [f"{m} {p}" for m, p in [*RULES, *TARGETS, *TWINS] if (m, p) not in CONSOLE_ROUTES]
    assert not stale, f"rules for console routes that no longer exist: {stale}"


@pytest.mark.parametrize(("route", "twin"), TWINS.items(), ids=[f"{m} {p}" for m, p in TWINS])
def test_a_console_route_asks_the_scope_its_api_route_asks(
    route: tuple[str, str], twin: tuple[str, str]
) -> None:
    # Changing a listener also needs call on its model, in the API too (see ALLOWED).
    assert RULES[route] == API_RULES[twin] or (RULES[route], API_RULES[twin]) == (
        "listener",
        "listeners:manage",
    )


@pytest.mark.parametrize("scope", KEYS)
@pytest.mark.parametrize(("method", "path"), GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
def test_each_console_route_enforces_its_rule_for_each_scope(
    world: World, scoped_keys: dict[str, str], method: str, path: str, scope: str
) -> None:
    rule = RULES[(method, path)]
    aim = TARGETS[(method, path)](world)
    before = aim.state()
    with logged_in(world.server, scoped_keys[scope]) as console:
        answer = console.send(method, aim.url, aim.form)
    after = aim.state()
    page = text_of(answer)
    if scope in ALLOWED[rule]:
        assert answer.status_code == aim.status, page[:3000]
        if aim.location is not None:
            assert answer.headers["location"] == aim.location
        if aim.shows is not None:
            assert aim.shows in page
        assert (after != before) == aim.changes, (before, after)
    else:
        assert answer.status_code == 403, page[:3000]
        assert "<h1>Not allowed</h1>" in page
        assert any(refusal in page for refusal in REFUSALS[rule].split("|")), page[:3000]
        if aim.shows is not None:
            assert aim.shows not in page
        assert after == before


POSTS = [(m, p) for m, p in GUARDED if m == "POST"]


@pytest.mark.parametrize(("method", "path"), POSTS, ids=[f"{m} {p}" for m, p in POSTS])
def test_a_post_without_the_sessions_csrf_token_changes_nothing(
    world: World, method: str, path: str
) -> None:
    aim = TARGETS[(method, path)](world)
    before = aim.state()
    with logged_in(world.server, world.server.admin_key) as console:
        for token in ("", "not-the-token", console.csrf_token[:-1]):
            answer = console.send(method, aim.url, aim.form, csrf_token=token)
            assert answer.status_code == 403, text_of(answer)[:3000]
            assert "reload the page and try again" in text_of(answer)
    assert aim.state() == before


@pytest.mark.parametrize("scope", KEYS)
def test_the_models_page_lists_only_the_models_a_key_may_read(
    world: World, scoped_keys: dict[str, str], scope: str
) -> None:
    with logged_in(world.server, scoped_keys[scope]) as console:
        page = console.http.get(f"{PREFIX}/models").text
    assert ('href="/console/models/test/echo"' in page) == (scope in ALLOWED["read"])


@pytest.mark.parametrize("scope", KEYS)
def test_dead_letters_show_bodies_to_listener_managers_and_versions_to_model_readers(
    world: World, scoped_keys: dict[str, str], scope: str
) -> None:
    marker = uuid.uuid4().hex
    message_id, _ = world.lost.letter(body=f'{{"kept": "{marker}"}}'.encode())
    with logged_in(world.server, scoped_keys[scope]) as console:
        page = text_of(console.http.get(f"{PREFIX}/listeners/{world.lost.name}/dead-letters"))
    assert message_id in page
    # The body is the message's content, as GET /v1/dead-letters/{id} (listeners:manage).
    manages = scope in ALLOWED["listeners:manage"]
    assert (marker in page) == manages
    # The versions to redrive to are model metadata, as GET /v1/models/.../versions (read).
    assert ('<option value="1.0.0">' in page) == (manages and scope in ALLOWED["read"])


# --- sessions end -----------------------------------------------------------------------------


def replayed(server: ModelbusServer, cookies: httpx.Cookies) -> httpx.Response:
    """The listeners page asked with a saved copy of a session's cookies, in a new client."""
    with httpx.Client(base_url=server.url, timeout=60.0, follow_redirects=False) as http:
        http.cookies.update(cookies)
        return http.get(f"{PREFIX}/listeners")


def test_logging_out_ends_the_session_even_for_a_saved_cookie(world: World) -> None:
    key = make_key(world.server, "call:*", name="logs out")
    with logged_in(world.server, key) as console:
        saved = httpx.Cookies(console.http.cookies)
        assert replayed(world.server, saved).status_code == 200
        answer = console.send("POST", f"{PREFIX}/logout", {})
        assert answer.status_code == 303
    again = replayed(world.server, saved)
    assert again.status_code == 303, again.text[:2000]
    assert again.headers["location"].startswith(f"{PREFIX}/login")


def test_revoking_a_key_ends_its_sessions(world: World) -> None:
    key = make_key(world.server, "call:*", name="revoked in session")
    with logged_in(world.server, key) as console:
        saved = httpx.Cookies(console.http.cookies)
    with world.server.http() as admin:
        assert admin.delete(f"/v1/keys/{key.split('_')[1]}").status_code == 200
    again = replayed(world.server, saved)
    assert again.status_code == 303, again.text[:2000]
    assert again.headers["location"].startswith(f"{PREFIX}/login")
