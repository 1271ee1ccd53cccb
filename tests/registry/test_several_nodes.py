"""Several ``modelbus serve`` processes on loopback: one PostgreSQL database, moto's S3 as the
artifact store (reached through the usual AWS settings). A version pushed on node A is called
on B and C; the environment B builds on first use has its log shown by every node; a lost
archive and a store that went down are reported by the calls that needed them and by
``/health``, while versions a node already fetched keep running there."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from modelbus import errors
from tests.aws.motoserver import FAKE_CREDENTIALS, MotoServer
from tests.support.fixtures import MODELS_DIR, model_variant
from tests.support.postgres import fresh_database
from tests.support.server import MODELBUS, ModelbusServer, clean_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BUCKET = "modelbus-artifacts"
SIX_MODEL = 'import six\n\ndef apply(x):\n    return {"six": six.__version__}\n'
SIX_MANIFEST = (
    '[model]\nowner = "test"\nname = "six"\n'
    '[runtime]\nentrypoint = "model:apply"\nrequirements = ["six==1.17.0"]\n'
)


def six_model(tmp_path: Path) -> Path:
    folder = tmp_path / "six-model"
    folder.mkdir()
    (folder / "modelbus.toml").write_text(SIX_MANIFEST)
    (folder / "model.py").write_text(SIX_MODEL)
    return folder


def wait_degraded(server: ModelbusServer, timeout_s: float = 60.0) -> dict[str, object]:
    """``/health`` once it reports the artifact store down (it checks every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        health: dict[str, object] = httpx.get(f"{server.url}/health", timeout=10).json()
        if health["status"] == "degraded" or time.monotonic() > deadline:
            return health
        time.sleep(0.5)


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    """A moto server of this test alone (the test stops it), with the artifacts bucket."""
    with MotoServer() as server:
        s3_of(server).create_bucket(Bucket=BUCKET)
        yield server


def test_push_on_one_node_call_on_the_others(tmp_path: Path, moto: MotoServer) -> None:
    env = {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto.endpoint_url,
        "AWS_REGION": moto.region,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "MODELBUS_ARTIFACTS": f"s3://{BUCKET}/models",
    }
    with fresh_database("modelbus_nodes") as url, ExitStack() as stack:
        a = stack.enter_context(ModelbusServer.start(tmp_path / "a", database_url=url, env=env))
        nodes = [a]
        for name in ("b", "c"):  # the admin key was printed by the first node only
            other = ModelbusServer(
                data_dir=tmp_path / name, database_url=url, env=env, admin_key=a.admin_key
            )
            nodes.append(stack.enter_context(other.restart()))
        a, b, c = nodes

        for server in nodes:
            health = httpx.get(f"{server.url}/health").json()
            assert health["status"] == "ok"
            assert health["artifacts"]["store"].startswith(f"s3://{BUCKET}/models/ at ")

        with a.client() as on_a:
            strict = on_a.push(MODELS_DIR / "strict", version="1.0.0")
            six = on_a.push(six_model(tmp_path), version="1.0.0")
            echo = on_a.push(MODELS_DIR / "echo", version="1.0.0")
            later = on_a.push(model_variant(tmp_path, "echo", "later"), version="1.1.0")
        stored = {o["Key"] for o in s3_of(moto).list_objects_v2(Bucket=BUCKET)["Contents"]}
        for pushed in (strict, six, echo, later):
            assert f"models/{pushed.build.removeprefix('sha256:')}.tar.gz" in stored

        with b.client() as on_b, c.client() as on_c:
            assert on_b.call("test/strict@1.*", {"text": "b"}).value == {"text": "B"}
            assert on_c.call("test/strict", {"text": "c"}).value == {"text": "C"}
            # B builds the environment itself, on first use; every node shows its log.
            assert on_b.call("test/six", {}).value == {"six": "1.17.0"}
            build = on_c.build(six.build)
            assert build.node_logs is not None
            assert list(build.node_logs) == [f"{socket.gethostname()}:{b.port}"]
            assert "environment ready" in next(iter(build.node_logs.values()))
            assert build.log and "creating environment" in build.log  # A's push, from the db
            shown = subprocess.run(
                [MODELBUS, "models", "builds", "test/six", "--log", six.build],
                env=clean_env({"MODELBUS_URL": c.url, "MODELBUS_API_KEY": c.admin_key}),
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout
            assert "creating environment" in shown  # the push on A
            assert f"on {socket.gethostname()}:{b.port}" in shown  # B's first use

            # An archive lost from the store: the call says which version and which store.
            s3_of(moto).delete_object(
                Bucket=BUCKET, Key=f"models/{echo.build.removeprefix('sha256:')}.tar.gz"
            )
            with pytest.raises(errors.ArtifactMissing) as missing:
                on_c.call("test/echo@1.0.0", {"x": 1})
            assert "test/echo 1.0.0" in missing.value.message
            assert f"s3://{BUCKET}/" in missing.value.message  # (its prefix masked in errors)

            # The store goes down: what a node fetched before still runs there...
            moto.stop()
            assert on_b.call("test/strict", {"text": "still"}).value == {"text": "STILL"}
            # ...a call needing an archive it has not fetched says the store is unreachable,
            with c.http() as http:
                answer = http.post("/v1/models/test/echo/versions/1.1.0/invoke", json={"x": 2})
            assert answer.status_code == 503 and answer.headers["Retry-After"]
            error = answer.json()["error"]
            assert error["code"] == "ArtifactUnavailable"
            assert "test/echo 1.1.0" in error["message"] and BUCKET in error["message"]
            # ...and /health says so on every node, without any call on A.
            assert httpx.get(f"{c.url}/health").json()["status"] == "degraded"
            health = wait_degraded(a)
            assert health["status"] == "degraded"
            artifacts = health["artifacts"]
            assert isinstance(artifacts, dict) and artifacts["ok"] is False
            assert f"s3://{BUCKET}/models/" in artifacts["error"]
            with pytest.raises(errors.ArtifactUnavailable), a.client() as on_a:
                on_a.push(model_variant(tmp_path, "echo", "never"), version="1.2.0")
            assert [v.version for v in on_c.versions("test", "echo")] == ["1.1.0", "1.0.0"]


def s3_of(moto: MotoServer) -> Any:
    """A plain boto3 client on moto, to look at and tamper with the bucket."""
    return boto3.client(
        "s3",
        region_name=moto.region,
        endpoint_url=moto.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
