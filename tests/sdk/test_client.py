"""The SDK (Client and AsyncClient) against a real server: typed results and the errors of
modelbus.errors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from modelbus import AsyncClient, Client, errors
from modelbus.client import CallResult
from modelbus.client.schemas import DEFAULT_MAX_IN_FLIGHT
from modelbus.listeners.definition import ListenerDefinition
from tests.support.fixtures import MODELS_DIR, Published, model_variant
from tests.support.server import ModelbusServer


def test_call_json_text_bytes(server: ModelbusServer) -> None:
    with server.client() as client:
        as_json = client.call("test/echo@1.0.0", {"a": 1})
        assert as_json == CallResult(
            value={"a": 1},
            content_type="json",
            duration_s=as_json.duration_s,
            version="1.0.0",
        )
        assert client.call("test/echo@1.*", "words").value == "words"
        as_bytes = client.call("test/echo", b"\x00\x01")
        assert as_bytes.value == b"\x00\x01"
        assert as_bytes.content_type == "binary"
        assert as_bytes.version == "2.0.0"
        forced = client.call("test/echo@1.0.0", "sent as bytes", content_type="binary")
        assert forced.value == b"sent as bytes"
        encoded = client.call("test/echo@1.0.0", b'{"already": "json"}', content_type="json")
        assert encoded.value == {"already": "json"}
        printed = client.call("test/echo@1.0.0", {"print": "out"}, stdout=True)
        assert printed.stdout is not None and "out" in printed.stdout


def test_errors_are_modelbus_errors(server: ModelbusServer) -> None:
    with server.client() as client:
        with pytest.raises(errors.ModelError) as model_error:
            client.call("test/echo@1.0.0", {"fail": "sdk boom"})
        assert "sdk boom" in model_error.value.message
        assert "Traceback" in model_error.value.stacktrace
        assert model_error.value.version == "1.0.0"
        assert model_error.value.error_type == "ValueError"
        with pytest.raises(errors.InvocationTimeout):
            client.call("test/echo@1.0.0", {"sleep": 20}, timeout_s=1)
        with pytest.raises(errors.ModelNotFound):
            client.call("test/nothing", 1)
        with pytest.raises(errors.VersionNotFound):
            client.call("test/echo@5.*", 1)
        with pytest.raises(errors.VersionSpecError):
            client.call("test/echo@5.x", 1)
        with pytest.raises(errors.InputRejected):
            client.call("test/strict", {"nope": 1})
    stranger = Client(server.url, "mb_0000000000000000_" + "a" * 43)
    with stranger, pytest.raises(errors.Unauthenticated):
        stranger.models()
    with server.client() as admin:
        limited = admin.create_key("sdk limited", ["call:test/strict"]).key
    with Client(server.url, limited) as client, pytest.raises(errors.Forbidden):
        client.call("test/echo", 1)


def test_unreachable_server_is_a_modelbus_error() -> None:
    with Client("http://127.0.0.1:9", "k") as client, pytest.raises(errors.ModelbusError):
        client.models()


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 0.0, -1.0, 20_000.0])
async def test_a_redrive_pace_json_cannot_carry_or_the_server_refuses_is_invalid_input(
    rate: float,
) -> None:
    """Refused before a request (nan and inf have no JSON form: the JSON encoder's
    ValueError reached the caller), in both clients; nothing listens at the URL."""
    with Client("http://127.0.0.1:9", "mb_0000000000000000_x") as client:
        with pytest.raises(errors.InvalidInput, match="rate_per_s"):
            client.redrive("any", rate_per_s=rate)
        with pytest.raises(errors.InvalidInput, match="rate_per_s"):
            client.redrive_matching(every=True, rate_per_s=rate)
    async with AsyncClient("http://127.0.0.1:9", "mb_0000000000000000_x") as aclient:
        with pytest.raises(errors.InvalidInput, match="rate_per_s"):
            await aclient.redrive_matching(every=True, rate_per_s=rate)


def test_jobs(server: ModelbusServer) -> None:
    with server.client() as client:
        job = client.submit("test/echo@1.0.0", {"sleep": 0.3})
        assert job.status in ("queued", "running")
        done = client.wait(job.id, timeout_s=60)
        assert done.unwrap().value == {"sleep": 0.3}
        failed = client.wait(client.submit("test/echo", {"fail": "job boom"}).id, 60)
        with pytest.raises(errors.ModelError, match="job boom"):
            failed.unwrap()
        with pytest.raises(errors.JobNotFound):
            client.job("nope")
        slow = client.submit("test/echo@1.0.0", {"sleep": 5})
        with pytest.raises(TimeoutError):
            client.wait(slow.id, timeout_s=0.2)


def test_listing_and_push(server: ModelbusServer, published: Published, tmp_path: Path) -> None:
    with server.client() as client:
        assert {m.name for m in client.models()} >= {"echo", "strict"}
        assert client.model("test", "echo").latest_version == "2.0.0"
        assert [v.version for v in client.versions("test", "echo")] == ["2.0.0", "1.1.0", "1.0.0"]
        builds = client.builds("test", "echo")
        assert published.unpublished_build in {b.hash for b in builds}
        assert client.build(published.echo_builds["2.0.0"]).log
        lines: list[str] = []
        folder = model_variant(tmp_path, "echo", "sdk-push")
        toml = folder / "modelbus.toml"
        toml.write_text(toml.read_text().replace('name = "echo"', 'name = "sdkpush"'))
        pushed = client.push(folder, bump="patch", on_log=lines.append)
        assert pushed.version == "0.0.1"
        assert any("stored test/sdkpush" in line for line in lines)
        published_version = client.publish("test", "sdkpush", version="0.0.1")
        assert published_version.published
        with pytest.raises(errors.ManifestError):
            client.push(tmp_path)


async def test_async_client(server: ModelbusServer, tmp_path: Path) -> None:
    async with AsyncClient(server.url, server.admin_key) as client:
        assert (await client.call("test/echo@1.0.0", "async")).value == "async"
        job = await client.submit("test/strict", {"text": "a"})
        assert (await client.wait(job.id, 60)).unwrap().value == {"text": "A"}
        with pytest.raises(errors.ModelError):
            await client.call("test/echo@1.0.0", {"fail": "x"})
        assert [m.name for m in await client.models()]
        assert await client.versions("test", "strict")
        assert await client.builds("test", "strict")
        pushed = await client.push(MODELS_DIR / "strict", version="1.0.0")
        assert pushed.created is False
        created = await client.create_key("async", ["call:*"])
        assert created.info.id in {k.id for k in await client.keys()}
        revoked = await client.revoke_key(created.info.id)
        assert revoked.revoked_at is not None
        echo = await client.model_history("test", "echo", window_s=600, step_s=60)
        assert len(echo.times) == 10 and echo.model == "test/echo"
        with pytest.raises(errors.ListenerNotFound):
            await client.listener_history("no-such-listener")
        with Client(server.url, server.admin_key) as same:
            assert (await client.flow()).nodes == same.flow().nodes


def test_env_defaults(server: ModelbusServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELBUS_URL", server.url)
    monkeypatch.setenv("MODELBUS_API_KEY", server.admin_key)
    with Client() as client:
        assert client.url == server.url
        assert client.call("test/echo@1.0.0", 5).value == 5


def test_a_bad_manifest_is_refused_by_the_server(server: ModelbusServer, tmp_path: Path) -> None:
    folder = model_variant(tmp_path, "echo", "sdk-bad-manifest")
    (folder / "modelbus.toml").write_text('[model]\nowner = "test"\nname = "sdkbad"\n')
    with server.client() as client, pytest.raises(errors.ManifestError) as refused:
        client.push(folder, version="0.0.1")
    assert "[runtime]" in refused.value.message
    with server.client() as client, pytest.raises(errors.ModelNotFound):
        client.model("test", "sdkbad")


def listener_mapping(name: str, **change: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": f"local://{name}-in?poll_ms=50",
        "model": "test/echo@1.*",
        "outputs": [f"local://{name}-out"],
        **change,
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "no-slash"}, "model"),
        ({"colour": "blue"}, "colour"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"name": "not/a/name"}, "name"),
        ({"name": None}, "name"),
    ],
)
def test_a_refused_mapping_is_the_definition_error_a_listener_file_gets(
    server: ModelbusServer, change: dict[str, Any], field: str
) -> None:
    mapping = {**listener_mapping(f"sdk-bad-{uuid.uuid4().hex[:8]}"), **change}
    if mapping["name"] is None:
        del mapping["name"]
    with pytest.raises(errors.DefinitionError) as local:
        ListenerDefinition.from_mapping(mapping)
    assert f"{field}: " in local.value.message
    with server.client() as client:
        with pytest.raises(errors.DefinitionError) as created:
            client.create_listener(mapping)
        assert created.value.message == local.value.message
        with pytest.raises(errors.DefinitionError) as put:
            client.put_listener(mapping)
        assert put.value.message == local.value.message
        with pytest.raises(errors.DefinitionError) as applied:
            client.apply_listeners([listener_mapping(f"sdk-ok-{uuid.uuid4().hex[:8]}"), mapping])
        assert applied.value.message.startswith(f"listeners[1]: {field}: ")
        assert not [x for x in client.listeners() if x.name.startswith(("sdk-bad-", "sdk-ok-"))]


async def test_a_mapping_is_sent_as_it_is_and_checked_by_the_server(
    server: ModelbusServer,
) -> None:
    name = f"sdk-map-{uuid.uuid4().hex[:8]}"
    async with AsyncClient(server.url, server.admin_key) as client:
        with pytest.raises(errors.DefinitionError, match="model: "):
            await client.create_listener(listener_mapping(name, model="test/echo@1.x"))
        stored = await client.put_listener(listener_mapping(name, model="test/echo"))
        assert stored.definition.model == "test/echo@latest"  # normalized by the server
        assert (await client.listener(name)).definition.max_in_flight == DEFAULT_MAX_IN_FLIGHT
        await client.delete_listener(name)
