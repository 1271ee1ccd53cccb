"""Algorithmia ADK algorithms run unmodified: a folder with algorithmia.conf,
requirements.txt and src/Algorithm.py (built on the real algorithmia-adk) is pushed with
`modelbus models push DIR --version X.Y.Z`, its requirements installed, ``load`` run once per
runner, and called with JSON, text and bytes through the official Algorithmia client."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import pytest

from modelbus.client.archive import pack
from tests.cli.test_cli import run
from tests.support.fixtures import MODELS_DIR
from tests.support.server import ModelbusServer

with warnings.catch_warnings():  # its generated API client has invalid escape sequences
    warnings.simplefilter("ignore", DeprecationWarning)
    import Algorithmia
    from Algorithmia.errors import AlgorithmException

pytestmark = pytest.mark.slow  # builds an environment with the ADK's requirements


@pytest.fixture(scope="module")
def greeter(modelbus_server: ModelbusServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("adk") / "greeter"
    shutil.copytree(MODELS_DIR / "adk_greeter", folder)
    assert not (folder / "modelbus.toml").exists()
    pushed = run(modelbus_server, "models", "push", str(folder), "--version", "1.0.0")
    assert pushed.returncode == 0, pushed.stderr
    assert "adkuser/greeter 1.0.0 published" in pushed.stdout
    assert not (folder / "modelbus.toml").exists()  # the user's folder is left alone
    return "adkuser/greeter/1.0.0"


def test_json_text_and_binary_in_and_out(modelbus_server: ModelbusServer, greeter: str) -> None:
    algo = Algorithmia.client(modelbus_server.admin_key, modelbus_server.url).algo(greeter)
    as_json = algo.pipe({"n": [1, 2]})
    assert as_json.result["input"] == {"n": [1, 2]}
    assert as_json.metadata.content_type == "json"
    as_text = algo.pipe("Ada")
    assert as_text.result == "Hello Ada"  # apply(input, state): state is what load returned
    assert as_text.metadata.content_type == "text"
    as_bytes = algo.pipe(bytearray(b"\x00\x01\xff"))
    assert as_bytes.result == b"\xff\x01\x00"
    assert as_bytes.metadata.content_type == "binary"


def test_load_runs_once_per_runner(modelbus_server: ModelbusServer, greeter: str) -> None:
    algo = Algorithmia.client(modelbus_server.admin_key, modelbus_server.url).algo(greeter)
    seen = [algo.pipe({"i": i}).result for i in range(5)]
    by_runner: dict[int, set[int]] = {}
    for result in seen:
        by_runner.setdefault(result["pid"], set()).add(result["loads"])
    assert all(loads == {1} for loads in by_runner.values()), by_runner


def test_an_exception_is_an_algorithm_error(modelbus_server: ModelbusServer, greeter: str) -> None:
    algo = Algorithmia.client(modelbus_server.admin_key, modelbus_server.url).algo(greeter)
    with pytest.raises(AlgorithmException) as raised:
        algo.pipe({"fail": "no greeting for you"})
    assert raised.value.error_type == "ValueError"
    assert "no greeting for you" in raised.value.message
    assert "Algorithm.py" in raised.value.stack_trace


def test_apply_without_state_serve_and_a_name_given(
    modelbus_server: ModelbusServer, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    shutil.copytree(MODELS_DIR / "adk_plain", folder)
    pushed = run(
        modelbus_server,
        "models",
        "push",
        str(folder),
        "--version",
        "0.1.0",
        "--name",
        "adk/renamed",
    )
    assert pushed.returncode == 0, pushed.stderr
    algo = Algorithmia.client(modelbus_server.admin_key, modelbus_server.url).algo(
        "adk/renamed/0.1.0"
    )
    assert algo.pipe("shout").result == {"upper": "SHOUT"}
    assert algo.pipe([1]).result == {"got": [1]}


def test_what_cannot_run_is_refused_before_upload(
    modelbus_server: ModelbusServer, tmp_path: Path
) -> None:
    java = tmp_path / "java"
    shutil.copytree(MODELS_DIR / "adk_plain", java)
    (java / "algorithmia.conf").write_text(
        json.dumps({"username": "a", "algoname": "b", "language": "java11"})
    )
    refused = run(modelbus_server, "models", "push", str(java), "--version", "1.0.0")
    assert refused.returncode != 0
    assert "language 'java11'" in refused.stderr
    nameless = tmp_path / "nameless"
    shutil.copytree(MODELS_DIR / "adk_plain", nameless)
    (nameless / "algorithmia.conf").write_text("{}")
    refused = run(modelbus_server, "models", "push", str(nameless))
    assert "username" in refused.stderr and "--name OWNER/NAME" in refused.stderr
    nocode = tmp_path / "nocode"
    shutil.copytree(MODELS_DIR / "adk_plain", nocode)
    (nocode / "src" / "plain.py").unlink()
    refused = run(modelbus_server, "models", "push", str(nocode))
    assert "src/Algorithm.py or src/plain.py" in refused.stderr


def test_model_data_manifest_is_refused_at_load(
    modelbus_server: ModelbusServer, tmp_path: Path
) -> None:
    folder = tmp_path / "withdata"
    shutil.copytree(MODELS_DIR / "adk_plain", folder)
    (folder / "model_manifest.json").write_text(json.dumps({"required_files": []}))
    pushed = run(
        modelbus_server, "models", "push", str(folder), "--version", "1.0.0", "--name", "adk/data"
    )
    assert pushed.returncode == 0, pushed.stderr
    with modelbus_server.http() as http:
        answer = http.post("/v1/algo/adk/data/1.0.0", json={"x": 1})
    assert "model_manifest.json" in answer.json()["error"]["message"], answer.text


def test_an_archive_without_modelbus_toml_over_http(modelbus_server: ModelbusServer) -> None:
    """A raw upload of an ADK folder is read the same way: its algorithmia.conf names it."""
    buffer = io.BytesIO()
    pack(MODELS_DIR / "adk_plain", buffer)
    archive = buffer.getvalue()
    headers = {"Content-Type": "application/gzip"}
    with modelbus_server.http() as http:
        wrong = http.post("/v1/models/adk/wrong/versions", content=archive, headers=headers)
        right = http.post(
            "/v1/models/someone/plain/versions",
            content=archive,
            headers=headers,
            params={"version": "1.0.0"},
        )
        called = http.post("/v1/algo/someone/plain/1.0.0", json={"a": 1})
    assert wrong.status_code == 400
    assert "someone/plain" in wrong.json()["error"]["message"]
    assert right.status_code in (200, 201), right.text
    assert called.json()["result"] == {"got": {"a": 1}}
