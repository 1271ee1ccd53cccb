"""Model, version and build routes, and pushing archives over HTTP (plain and NDJSON)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from modelbus.client import pack_model
from tests.support.fixtures import MODELS_DIR, Published, model_variant
from tests.support.server import ModelbusServer


def _push(
    server: ModelbusServer, folder: Path, *, stream: bool = False, **params: str
) -> httpx.Response:
    manifest, archive = pack_model(folder)
    headers = {"Content-Type": "application/gzip"}
    if stream:
        headers["Accept"] = "application/x-ndjson"
    with server.http() as http:
        return http.post(
            f"/v1/models/{manifest.owner}/{manifest.name}/versions",
            content=archive,
            params=params,
            headers=headers,
        )


def _renamed(tmp_path: Path, owner: str, name: str) -> Path:
    folder = model_variant(tmp_path, "echo", f"{owner}-{name}")
    toml = folder / "modelbus.toml"
    toml.write_text(
        toml.read_text()
        .replace('owner = "test"', f'owner = "{owner}"')
        .replace('name = "echo"', f'name = "{name}"')
    )
    return folder


def test_list_get_versions_builds(server: ModelbusServer, published: Published) -> None:
    with server.http() as http:
        models = {f"{m['owner']}/{m['name']}": m for m in http.get("/v1/models").json()}
        assert models["test/echo"]["latest_version"] == "2.0.0"
        model = http.get("/v1/models/test/echo").json()
        assert model["description"].startswith("Echoes")
        versions = http.get("/v1/models/test/echo/versions").json()
        assert [v["version"] for v in versions] == ["2.0.0", "1.1.0", "1.0.0"]
        assert versions[0]["build"] == published.echo_builds["2.0.0"]
        assert all(v["published"] for v in versions)
        builds = http.get("/v1/models/test/echo/builds").json()
        assert {b["hash"] for b in builds} == {
            *published.echo_builds.values(),
            published.unpublished_build,
        }
        assert all(b["log"] is None for b in builds)
        build = http.get(f"/v1/builds/{published.echo_builds['1.0.0']}").json()
        assert build["status"] == "ready"
        assert build["versions"] == ["1.0.0"]
        assert build["manifest"]["model"]["name"] == "echo"
        assert "build of test/echo" in build["log"]
        prefix = published.echo_builds["1.0.0"].removeprefix("sha256:")[:10]
        assert http.get(f"/v1/builds/{prefix}").json()["hash"] == build["hash"]
        assert http.get("/v1/models/test/nothing").status_code == 404
        assert http.get("/v1/models/test/nothing/versions").status_code == 404
        assert http.get("/v1/builds/sha256:" + "1" * 64).status_code == 404
        assert http.get("/v1/builds/zz").status_code == 400


def test_push_plain_json_then_repeat_is_a_no_op(server: ModelbusServer, tmp_path: Path) -> None:
    folder = _renamed(tmp_path, "push", "plain")
    first = _push(server, folder, version="0.1.0")
    assert first.status_code == 201, first.text
    assert first.json()["version"] == "0.1.0"
    assert first.json()["published"] is True
    assert first.json()["built"] is True
    again = _push(server, folder, version="0.1.0")
    assert again.status_code == 200
    assert again.json()["created"] is False
    _, other = pack_model(model_variant(tmp_path, "echo", "x"))
    with server.http() as http:
        mismatch = http.post("/v1/models/push/plain/versions", content=other)
    assert mismatch.status_code == 400
    assert "test/echo" in mismatch.json()["error"]["message"]


def test_push_streams_build_progress(server: ModelbusServer, tmp_path: Path) -> None:
    folder = _renamed(tmp_path, "push", "stream")
    response = _push(server, folder, stream=True, bump="major")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in response.text.splitlines()]
    assert events[0]["event"] == "log"
    assert any("stored push/stream" in (e.get("line") or "") for e in events)
    assert events[-1]["event"] == "result"
    assert events[-1]["result"]["version"] == "1.0.0"
    with server.http() as http:
        called = http.post("/v1/models/push/stream/invoke", json="hi")
    assert called.json()["result"] == "hi"


def test_push_without_version_is_callable_by_hash_only(
    server: ModelbusServer, tmp_path: Path
) -> None:
    folder = _renamed(tmp_path, "push", "hashonly")
    pushed = _push(server, folder).json()
    assert pushed["version"] is None
    with server.http() as http:
        assert http.post("/v1/models/push/hashonly/invoke", json=1).status_code == 404
        by_hash = http.post(f"/v1/models/push/hashonly/versions/{pushed['build']}/invoke", json=1)
        assert by_hash.status_code == 200
        published = http.post("/v1/models/push/hashonly/publish", json={"version": "3.0.0"})
        assert published.status_code == 200, published.text
        assert published.json()["build"] == pushed["build"]
        assert http.post("/v1/models/push/hashonly/invoke", json=2).json()["result"] == 2


def test_push_unpublished_version(server: ModelbusServer, tmp_path: Path) -> None:
    folder = _renamed(tmp_path, "push", "later")
    pushed = _push(server, folder, version="1.0.0", publish="false").json()
    assert pushed["published"] is False
    with server.http() as http:
        assert http.post("/v1/models/push/later/invoke", json=1).status_code == 404
        versions = http.get("/v1/models/push/later/versions").json()
        assert versions[0]["published"] is False


def test_version_conflict_is_409(server: ModelbusServer, tmp_path: Path) -> None:
    assert _push(server, _renamed(tmp_path / "a", "push", "conflict"), version="1.0.0").is_success
    other = _renamed(tmp_path / "b", "push", "conflict")
    (other / "extra.txt").write_text("different content")
    response = _push(server, other, version="1.0.0")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "VersionConflict"


def test_broken_model_is_a_build_error_with_its_log(server: ModelbusServer, tmp_path: Path) -> None:
    folder = _renamed(tmp_path, "push", "broken")
    toml = folder / "modelbus.toml"
    toml.write_text(toml.read_text().replace("model:apply", "model:no_such_function"))
    response = _push(server, folder, version="1.0.0")
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert "no_such_function" in error["message"] + (error.get("log") or "")
    streamed = _push(server, folder, stream=True, version="1.0.0")
    last = json.loads(streamed.text.splitlines()[-1])
    assert last["event"] == "error"
    assert "no_such_function" in last["error"]["message"] + (last["error"].get("log") or "")


@pytest.mark.parametrize(
    ("archive", "fragment"),
    [
        (b"not an archive at all", ""),
        (None, "modelbus.toml"),  # a valid tar.gz without a manifest
    ],
)
def test_bad_archives_are_400(server: ModelbusServer, archive: bytes | None, fragment: str) -> None:
    if archive is None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo("README")
            tar.addfile(info, io.BytesIO(b""))
        archive = buffer.getvalue()
    with server.http() as http:
        response = http.post(
            "/v1/models/test/echo/versions",
            content=archive,
            headers={"Content-Type": "application/gzip"},
            params={"version": "9.0.0"},
        )
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]


def test_bad_version_parameters(server: ModelbusServer) -> None:
    _, archive = pack_model(MODELS_DIR / "echo")
    with server.http() as http:
        for params, status in (
            ({"version": "1.2"}, 400),
            ({"bump": "huge"}, 422),
            ({"version": "1.0.0", "bump": "minor"}, 400),
        ):
            response = http.post("/v1/models/test/echo/versions", content=archive, params=params)
            assert response.status_code == status, (params, response.text)
