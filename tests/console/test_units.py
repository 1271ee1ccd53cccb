"""The console's parts without a browser: session cookies, the listener form, how results
and bodies are shown; and CSRF and login protection over real HTTP against a real server."""

from __future__ import annotations

import contextlib
import re

import httpx
import pytest

from modelbus.errors import DefinitionError, Unauthenticated
from modelbus.listeners.definition import BatchPolicy, ClaimCheck, ListenerDefinition
from modelbus.listeners.retry import RetryPolicy
from modelbus.runtime.invocation import Payload
from modelbus.store.secrets import SecretBox
from modelbus.web.console.dead_letters import body_view, hexdump
from modelbus.web.console.listener_form import ListenerForm
from modelbus.web.console.models import _shown
from modelbus.web.console.session import SessionCodec, SessionExpired, csrf_matches, load_secret
from tests.support.server import ModelbusServer

KEY = "mb_0123456789abcdef_" + "k" * 43
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def codec(**options: int) -> SessionCodec:
    return SessionCodec(SecretBox.new_key().encode(), **options)


def test_a_session_cookie_carries_the_key_encrypted_and_opens_only_here() -> None:
    sessions = codec()
    cookie, issued = sessions.issue(KEY, "session-id-1")
    assert KEY not in cookie and "k" * 20 not in cookie and "session-id-1" not in cookie
    opened = sessions.open(cookie)
    assert opened == issued
    assert csrf_matches(opened, issued.csrf_token)
    assert not csrf_matches(opened, "forged")
    assert not csrf_matches(opened, None)
    with pytest.raises(Unauthenticated):
        codec().open(cookie)  # another server's secret
    with pytest.raises(Unauthenticated):
        sessions.open(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))


def test_a_session_expires() -> None:
    sessions = codec(max_age_s=-1)
    cookie, _ = sessions.issue(KEY, "session-id-2")
    with pytest.raises(SessionExpired):
        sessions.open(cookie)


def test_login_tokens_are_double_submitted() -> None:
    sessions = codec()
    cookie, token = sessions.login_token()
    assert sessions.login_token_matches(cookie, token)
    assert not sessions.login_token_matches(cookie, "other")
    assert not sessions.login_token_matches(None, token)
    assert not codec().login_token_matches(cookie, token)


def test_the_session_key_comes_from_the_servers_secret_key(tmp_path: object) -> None:
    first, second = SecretBox.new_key(), SecretBox.new_key()
    assert load_secret(tmp_path, f"{first},{second}") == first.encode()  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="secret key"):
        load_secret(tmp_path)  # type: ignore[arg-type]


def test_the_listener_form_round_trips_every_field() -> None:
    definition = ListenerDefinition.from_mapping(
        {
            "name": "ocr",
            "source": "local://in",
            "model": "acme/ocr@1.*",
            "outputs": ["local://a", "local://b"],
            "error_sink": "local://dead",
            "retry": {"max_attempts": 3, "initial_backoff_s": 0.5, "jitter": 0.1},
            "batch": {"max_batch_size": 4, "max_wait_ms": 20},
            "max_in_flight": 8,
            "max_body_bytes": 4096,
            "timeout_s": 12.5,
            "extend_lease": False,
            "filter": {"attributes": {"key": [{"suffix": ".pdf"}]}},
            "output_mode": "raw",
            "claim_check": {"url": "s3://large/results/", "over_bytes": 65536},
            "enabled": False,
        }
    )
    assert ListenerForm.of(definition).definition() == definition


def test_the_listener_form_has_a_field_for_every_definition_field() -> None:
    # A definition field missing from the form is reset to its default on every save.
    form_fields = set(ListenerForm.__dataclass_fields__)
    nested = {"retry": set(RetryPolicy.model_fields), "batch": set(BatchPolicy.model_fields)}
    nested["claim_check"] = {f"claim_check_{name}" for name in ClaimCheck.model_fields}
    for name in ListenerDefinition.model_fields:
        assert nested.get(name, {name}) <= form_fields, name


def test_a_blank_form_means_the_definitions_defaults() -> None:
    form = ListenerForm.blank()
    filled = ListenerForm(**{**_values(form), "name": "n", "source": "local://q", "model": "a/b"})
    assert filled.definition() == ListenerDefinition(name="n", source="local://q", model="a/b")


def test_the_form_refuses_what_the_definition_refuses_with_its_message() -> None:
    form = ListenerForm(name="n", source="local://q", model="a/b", max_in_flight="zero")
    with pytest.raises(DefinitionError) as refused:
        form.definition()
    with pytest.raises(DefinitionError) as direct:
        ListenerDefinition.from_mapping(
            {"name": "n", "source": "local://q", "model": "a/b", "max_in_flight": "zero"}
        )
    assert refused.value.message == direct.value.message
    with pytest.raises(DefinitionError, match="filter: not valid JSON"):
        ListenerForm(name="n", source="local://q", model="a/b", filter="{nope").definition()


def _values(form: ListenerForm) -> dict[str, object]:
    return {name: getattr(form, name) for name in form.__dataclass_fields__}


def test_results_are_shown_by_kind() -> None:
    assert _shown(Payload.from_json({"a": 1}))["text"] == '{\n  "a": 1\n}'
    assert _shown(Payload.from_text("hi"))["text"] == "hi"
    image = _shown(Payload.from_binary(PNG))
    assert image["image"] and image["data_url"].startswith("data:image/png;base64,")
    other = _shown(Payload.from_binary(b"\x00\x01", "application/x-thing"))
    assert not other["image"] and other["data_url"].startswith("data:application/x-thing;")


def test_dead_letter_bodies_are_shown_as_json_text_or_hex() -> None:
    assert body_view(b'{"b":1}') == ('{\n  "b": 1\n}', "JSON")
    assert body_view(b"plain") == ("plain", "text")
    text, kind = body_view(b"\xff\xfeAB")
    assert kind.startswith("binary") and text == hexdump(b"\xff\xfeAB")
    assert hexdump(bytes(range(65, 83))).splitlines() == [
        "00000000  41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  ABCDEFGHIJKLMNOP",
        "00000010  51 52                                            QR",
    ]


# --- over HTTP, against the real server ------------------------------------------------------


def _logged_in(server: ModelbusServer) -> httpx.Client:
    http = httpx.Client(base_url=server.url, timeout=30.0)
    form = http.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None
    done = http.post(
        "/console/login",
        data={"login_token": token[1], "api_key": server.admin_key, "next": "/console/runs"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/runs"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    return http


def test_posts_without_the_sessions_csrf_token_are_refused(console_server: ModelbusServer) -> None:
    with contextlib.closing(_logged_in(console_server)) as http:
        page = http.get("/console/listeners/new")
        assert page.status_code == 200
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        form = {"name": "csrf-probe", "source": "local://csrf-in", "model": "examples/hello"}
        refused = http.post("/console/listeners/new", data={**form, "csrf_token": "forged"})
        assert refused.status_code == 403
        assert "out of date or came from another site" in refused.text
        refused = http.post("/console/listeners/new", data=form)
        assert refused.status_code == 403
        accepted = http.post(
            "/console/listeners/new", data={**form, "csrf_token": token[1], "enabled": "on"}
        )
        assert accepted.status_code == 303
        assert http.post("/console/listeners/csrf-probe/delete", data={}).status_code == 403
        deleted = http.post("/console/listeners/csrf-probe/delete", data={"csrf_token": token[1]})
        assert deleted.status_code == 303


def test_login_needs_the_forms_token_and_a_valid_key(console_server: ModelbusServer) -> None:
    with httpx.Client(base_url=console_server.url, timeout=30.0) as http:
        forged = http.post("/console/login", data={"api_key": console_server.admin_key})
        assert forged.status_code == 403
        assert "modelbus_session" not in forged.headers.get("set-cookie", "")
        token = re.search(r'name="login_token" value="([^"]+)"', http.get("/console/login").text)
        assert token is not None
        wrong = http.post("/console/login", data={"login_token": token[1], "api_key": KEY})
        assert wrong.status_code == 401
        token = re.search(r'name="login_token" value="([^"]+)"', wrong.text)  # a fresh one
        assert token is not None
        elsewhere = http.post(
            "/console/login",
            data={
                "login_token": token[1],
                "api_key": console_server.admin_key,
                "next": "https://elsewhere.example/",
            },
        )
        assert elsewhere.headers["location"] == "/console/models"  # no open redirect
    with httpx.Client(base_url=console_server.url, timeout=30.0) as anonymous:
        assert anonymous.get("/console/listeners/live").status_code == 303


def test_a_bad_query_parameter_is_a_page_not_json(console_server: ModelbusServer) -> None:
    with contextlib.closing(_logged_in(console_server)) as http:
        page = http.get("/console/listeners/anything/dead-letters", params={"all": "notabool"})
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert "query.all" in page.text and "valid boolean" in page.text
    assert page.headers["x-frame-options"] == "DENY"
