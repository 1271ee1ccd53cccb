"""Secrets stay where they belong, on a real server: broker passwords in listener
definitions are encrypted at rest and never shown (answers, errors, logs, even while the
broker refuses connections); the key file is private; runner processes get a minimal
environment without any of the server's secrets."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from modelbus.errors import BuildError, ManifestError
from tests.security.conftest import make_key, store_rows
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer, free_port

PASSWORD = "Sup3r-s3cret-broker-pw"
SERVER_SECRETS = {
    "MODELBUS_SECRET_KEY": Fernet.generate_key().decode(),
    "MODELBUS_API_KEY": "mb_0123456789abcdef_server-side-cli-key-should-not-leak-00000",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-that-runners-must-not-see",
    "DATABASE_PASSWORD": "db-password-that-runners-must-not-see",
}
ENV_MODEL = """\
import os


def apply(input, context=None):
    return dict(os.environ)
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelbusServer]:
    """A server started with secrets in its environment and an env-dumping model."""
    tmp = tmp_path_factory.mktemp("secrets")
    model = tmp / "envdump"
    model.mkdir()
    (model / "modelbus.toml").write_text(
        '[model]\nowner = "test"\nname = "envdump"\n[runtime]\nentrypoint = "model:apply"\n'
    )
    (model / "model.py").write_text(ENV_MODEL)
    with ModelbusServer.start(tmp / "data", env=SERVER_SECRETS) as server:
        with server.client() as client:
            client.push(model, version="1.0.0")
            client.push(MODELS_DIR / "echo", version="1.0.0")
        yield server


def test_runners_get_a_minimal_environment(guarded: ModelbusServer) -> None:
    with guarded.http() as http:
        answer = http.post("/v1/models/test/envdump/invoke", json={})
    assert answer.status_code == 200, answer.text
    env: dict[str, str] = answer.json()["result"]
    assert env["PATH"]  # the runner works at all
    dumped = repr(env)
    for name, value in SERVER_SECRETS.items():
        assert name not in env and value not in dumped, name
    assert guarded.admin_key not in dumped
    assert not [name for name in env if name.startswith("MODELBUS_")]
    # Only the documented allow-list (modelbus.registry.launch) plus Python's own settings.
    allowed = {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "PYTHONUNBUFFERED"}
    allowed |= {
        "PYTHONDONTWRITEBYTECODE",
        "LC_CTYPE",
    }  # LC_CTYPE: set by Python's C locale coercion
    assert set(env) <= allowed, set(env) - allowed


def test_broker_passwords_are_encrypted_masked_and_never_logged(guarded: ModelbusServer) -> None:
    port = free_port()  # nobody listens there: every connection attempt fails
    url = f"amqp://app:{PASSWORD}@127.0.0.1:{port}/?queue=in"
    definition = {
        "name": "leaky",
        "source": url,
        "model": "test/echo@1.0.0",
        "outputs": [f"redis://:{PASSWORD}@127.0.0.1:{port}/0?stream=out"],
    }
    answers: list[str] = []
    with guarded.http() as http:
        # With the connection check, the refusal quotes the URL: masked.
        refused = http.put("/v1/listeners/leaky", json=definition)
        assert refused.status_code == 400, refused.text
        assert "Connection refused" in refused.text
        answers.append(refused.text)
        # Stored without the check, the listener keeps trying to connect, and failing.
        created = http.put("/v1/listeners/leaky?check=false", json=definition)
        assert created.status_code in (200, 201), created.text
        assert created.json()["definition"]["source"] == url  # the admin: whole
        # Wait for the listener to have tried (and failed) to connect: a degraded status
        # carrying the connection error.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = http.get("/v1/listeners/leaky/status")
            answers.append(status.text)
            if status.json().get("reason"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no connection error reported: {answers[-1]}")
        # A key that may manage it sees its URLs whole (it edits them); any other, redacted.
        assert http.get("/v1/listeners/leaky").json()["definition"]["source"] == url
    with guarded.http(make_key(guarded, "call:*")) as reader:
        for path in ("/v1/listeners", "/v1/listeners/leaky", "/v1/users/test/event-listeners"):
            answers.append(reader.get(path).text)
    with guarded.http() as http:
        # A refused update quotes the URL back in its error: masked too.
        bad = http.put("/v1/listeners/leaky", json={**definition, "model": "not/a model"})
        assert bad.status_code >= 400
        answers.append(bad.text)
        answers.append(http.delete("/v1/listeners/leaky").text)
    everything = "\n".join(answers)
    assert PASSWORD not in everything
    assert "***" in everything  # masked, not dropped: the operator sees where it connects
    assert PASSWORD not in guarded.log()
    assert str(port) in guarded.log()  # the connection errors were logged, masked
    # At rest: no plaintext anywhere in the store's files.
    raw = b"".join(p.read_bytes() for p in Path(guarded.data_dir).glob("modelbus.sqlite*"))
    assert PASSWORD.encode() not in raw


def test_the_generated_key_file_is_private(server: ModelbusServer) -> None:
    # The shared server runs without MODELBUS_SECRET_KEY: it made DATA_DIR/secret.key.
    key_file = Path(server.data_dir) / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_text().strip().encode())  # a usable key
    # every stored URL is sealed, its row showing it by its shape (***) only beside "sealed"
    query = "SELECT * FROM listeners WHERE definition NOT LIKE '%\"sealed\"%'"
    assert not list(store_rows(server, query))


def test_a_server_keeps_no_key_file_when_the_key_comes_from_the_environment(
    guarded: ModelbusServer,
) -> None:
    assert not (Path(guarded.data_dir) / "secret.key").exists()
    assert httpx.get(f"{guarded.url}/health").status_code == 200


LEAKY_BACKEND = """\
import os
import sys

sys.stderr.write("ENV-DUMP " + repr(sorted(os.environ.items())) + "\\n")
raise SystemExit("the leak backend only shows what it can see")
"""


def leaky_model(tmp: Path, requirement: str) -> Path:
    """A model requiring ``requirement`` (a direct one, whose build backend dumps its
    environment into the build log and fails)."""
    package = tmp / "leak"
    package.mkdir(exist_ok=True)
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        '[project]\nname = "leak"\nversion = "0.1"\n'
    )
    (package / "backend.py").write_text(LEAKY_BACKEND)
    model = tmp / "needs-leak"
    model.mkdir(exist_ok=True)
    (model / "modelbus.toml").write_text(
        '[model]\nowner = "test"\nname = "needsleak"\n[runtime]\nentrypoint = "model:apply"\n'
        f"requirements = [{requirement.replace('PACKAGE', package.as_uri())!r}]\n"
    )
    (model / "model.py").write_text("def apply(input, context=None):\n    return input\n")
    return model


@pytest.mark.parametrize(
    "requirement", ["leak @ PACKAGE", "leak @ https://example.invalid/leak-0.1.tar.gz"]
)
def test_direct_requirements_are_refused_by_default(
    guarded: ModelbusServer, tmp_path: Path, requirement: str
) -> None:
    with guarded.client() as client, pytest.raises(ManifestError) as refused:
        client.push(leaky_model(tmp_path, requirement), version="1.0.0")
    assert "--allow-direct-requirements" in refused.value.message
    assert "MODELBUS_ALLOW_DIRECT_REQUIREMENTS" in refused.value.message


def test_builds_get_a_minimal_environment(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'data' / 'modelbus.sqlite'}"
    env = {**SERVER_SECRETS, "MODELBUS_DATABASE_URL": database_url}
    args = ["--allow-direct-requirements"]
    with (
        ModelbusServer.start(tmp_path / "data", env=env, args=args) as server,
        server.client() as client,
        pytest.raises(BuildError) as failed,
    ):
        client.push(leaky_model(tmp_path, "leak @ PACKAGE"), version="1.0.0")
    log = failed.value.log or ""
    assert "ENV-DUMP" in log, log  # the backend ran and showed its environment
    dump = log[log.index("ENV-DUMP") :]
    for name, value in SERVER_SECRETS.items():
        assert name not in dump and value not in dump, name
    assert database_url not in dump and "MODELBUS_" not in dump
