"""``modelbus serve --artifacts`` (env ``MODELBUS_ARTIFACTS``): documented, a bad URL refused
before anything starts, and a store that cannot be reached reported by ``/health``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from modelbus.config import Settings
from tests.support.server import MODELBUS, ModelbusServer, clean_env


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env({"COLUMNS": "250"})
    return subprocess.run(
        [MODELBUS, "serve", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_the_option_is_documented() -> None:
    done = serve("--help")
    assert done.returncode == 0, done.stderr
    for words in ("--artifacts", "s3://BUCKET/PREFIX", "MODELBUS_ARTIFACTS", "modelbus[s3]"):
        assert words in done.stdout, words


def test_the_setting_comes_from_the_environment_or_the_flag() -> None:
    assert Settings.from_env({}).artifacts_url is None
    from_env = Settings.from_env({"MODELBUS_ARTIFACTS": "s3://b/p"})
    assert from_env.artifacts_url == "s3://b/p"
    flag = Settings.from_env({"MODELBUS_ARTIFACTS": "s3://b/p"}, artifacts_url="/mnt/x")
    assert flag.artifacts_url == "/mnt/x"


def test_a_bad_store_url_is_refused_before_starting(tmp_path: Path) -> None:
    for url, says in [
        ("redis://127.0.0.1/0", "not an artifact store"),
        ("s3://AKIA:secret@bucket/models", "credentials do not go in"),
    ]:
        done = serve("--data-dir", str(tmp_path / "data"), "--artifacts", url)
        assert done.returncode == 2, done.stdout + done.stderr
        assert says in done.stdout + done.stderr
        assert "AKIA:secret" not in done.stdout + done.stderr
    assert not (tmp_path / "data" / "modelbus.sqlite").exists()


def test_an_unreachable_store_is_shown_by_health_and_the_push(tmp_path: Path) -> None:
    share = tmp_path / "not-mounted"
    args = ["--artifacts", str(share)]
    with ModelbusServer.start(tmp_path / "data", args=args) as server:
        health = httpx.get(f"{server.url}/health").json()
        assert health["status"] == "degraded"
        assert health["artifacts"]["ok"] is False
        assert health["artifacts"]["store"] == f"folder {share}"
        assert "does not exist or is not mounted" in health["artifacts"]["error"]
        assert "artifact store unavailable" in server.log()
        with server.http() as http:
            folder = Path(__file__).parents[1] / "support" / "models" / "echo"
            archive = subprocess.run(
                ["tar", "-czf", "-", "-C", str(folder), "."], capture_output=True, check=True
            ).stdout
            answer = http.post(
                "/v1/models/test/echo/versions",
                params={"version": "1.0.0"},
                content=archive,
                headers={"Content-Type": "application/gzip"},
            )
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "ArtifactUnavailable"
            assert http.get("/v1/models").json() == []  # nothing recorded
        share.mkdir()
        server.restart()
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
