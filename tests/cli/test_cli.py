"""The real ``modelbus`` command against a real server."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import MODELS_DIR, Published, model_variant
from tests.support.server import MODELBUS, ModelbusServer, clean_env

COMMANDS = [
    ([], ["serve", "call", "models", "keys", "jobs"]),
    (["serve"], ["--host", "--port", "--data-dir", "--database-url", "--max-body-bytes"]),
    (["models", "push"], ["--version", "--bump", "--no-publish", "--name", "--url", "--key"]),
    (["models", "publish"], ["--build", "--version", "--bump", "--url", "--key"]),
    (["models", "list"], ["--json", "--url", "--key"]),
    (["models", "versions"], ["--json", "--url", "--key"]),
    (["models", "builds"], ["--log", "--json", "--url", "--key"]),
    (
        ["call"],
        ["--file", "--text", "--content-type", "--timeout", "--stdout", "--output", "--async"],
    ),
    (["jobs", "show"], ["--wait", "--json", "--url", "--key"]),
    (["keys", "create"], ["--scope", "--url", "--key"]),
    (["keys", "list"], ["--json", "--url", "--key"]),
    (["keys", "revoke"], ["--url", "--key"]),
]


def run(
    server: ModelbusServer, *args: str, key: str | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[Any]:
    """``modelbus ARGS`` with MODELBUS_URL and MODELBUS_API_KEY (admin unless ``key``)."""
    env = clean_env({"MODELBUS_URL": server.url, "MODELBUS_API_KEY": key or server.admin_key})
    return subprocess.run(
        [MODELBUS, *args],
        capture_output=True,
        text=stdin is None,
        input=stdin,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("command", "flags"), COMMANDS)
def test_help_documents_every_flag(command: list[str], flags: list[str]) -> None:
    result = subprocess.run(
        [MODELBUS, *command, "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for flag in flags:
        assert flag in result.stdout, f"{flag} missing from `modelbus {' '.join(command)} --help`"


def test_push_shows_progress_then_call(server: ModelbusServer, tmp_path: Path) -> None:
    folder = model_variant(tmp_path, "echo", "cli")
    toml = folder / "modelbus.toml"
    toml.write_text(toml.read_text().replace('name = "echo"', 'name = "clipush"'))
    pushed = run(server, "models", "push", str(folder), "--version", "1.2.3")
    assert pushed.returncode == 0, pushed.stderr
    assert "stored test/clipush" in pushed.stderr  # build progress
    assert "test/clipush 1.2.3" in pushed.stdout
    assert "published" in pushed.stdout
    called = run(server, "call", "test/clipush@1.2.*", '{"whoami": 1}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"greeting": "cli", "content_type": "json"}
    assert "test/clipush@1.2.3" in called.stderr


def test_listings(server: ModelbusServer, published: Published) -> None:
    models = run(server, "models", "list", "--json")
    assert {m["name"] for m in json.loads(models.stdout)} >= {"echo", "strict"}
    table = run(server, "models", "list")
    assert "test/echo" in table.stdout
    versions = json.loads(run(server, "models", "versions", "test/echo", "--json").stdout)
    assert [v["version"] for v in versions] == ["2.0.0", "1.1.0", "1.0.0"]
    builds = json.loads(run(server, "models", "builds", "test/echo", "--json").stdout)
    assert published.unpublished_build in {b["hash"] for b in builds}
    log = run(server, "models", "builds", "test/echo", "--log", published.echo_builds["1.0.0"])
    assert "build of test/echo" in log.stdout


def test_call_inputs(server: ModelbusServer, tmp_path: Path) -> None:
    text = run(server, "call", "test/echo@1.0.0", "--text", "plain words")
    assert text.stdout.strip() == "plain words"
    source = tmp_path / "input.json"
    source.write_text('{"from": "file"}')
    from_file = run(server, "call", "test/echo@1.0.0", "--file", str(source))
    assert json.loads(from_file.stdout) == {"from": "file"}
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02")
    out = tmp_path / "out.bin"
    saved = run(server, "call", "test/echo@1.0.0", "--file", str(binary), "--output", str(out))
    assert saved.returncode == 0, saved.stderr
    assert out.read_bytes() == b"\x00\x01\x02"
    piped = run(server, "call", "test/echo@1.0.0", "--file", "-", stdin=b"\xff\xfe")
    assert piped.stdout == b"\xff\xfe"
    printed = run(server, "call", "test/echo@1.0.0", '{"print": "from the model"}', "--stdout")
    assert "from the model" in printed.stderr


def test_errors_are_clear_without_tracebacks(server: ModelbusServer) -> None:
    failed = run(server, "call", "test/echo@1.0.0", '{"fail": "cli boom"}')
    assert failed.returncode == 1
    assert "error: " in failed.stderr and "cli boom" in failed.stderr
    assert "ValueError" in failed.stderr  # the model's own stack trace is shown
    assert "modelbus/cli/" not in failed.stderr  # but not ours
    missing = run(server, "call", "test/nothing", "1")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    timeout = run(server, "call", "test/echo@1.0.0", '{"sleep": 20}', "--timeout", "1")
    assert timeout.returncode == 1
    assert "InvocationTimeout" in timeout.stderr
    bad_json = run(server, "call", "test/echo", "{oops")
    assert bad_json.returncode == 2
    assert "--text" in bad_json.stderr
    no_key = run(server, "models", "list", key="mb_0000000000000000_" + "a" * 43)
    assert no_key.returncode == 1
    assert "invalid" in no_key.stderr.lower()
    unreachable = subprocess.run(
        [MODELBUS, "models", "list", "--url", "http://127.0.0.1:9", "--key", "x"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
        timeout=60,
    )
    assert unreachable.returncode == 1
    assert "cannot reach" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_async_call_and_jobs_show(server: ModelbusServer) -> None:
    submitted = run(server, "call", "test/echo@1.0.0", '{"sleep": 0.2}', "--async")
    job_id = submitted.stdout.strip()
    shown = run(server, "jobs", "show", job_id, "--wait", "60", "--json")
    assert json.loads(shown.stdout)["result"] == {"sleep": 0.2}
    assert json.loads(shown.stdout)["status"] == "succeeded"


def test_keys_lifecycle(server: ModelbusServer) -> None:
    created = run(server, "keys", "create", "cli key", "--scope", "call:test/echo")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("mb_")
    listed = json.loads(run(server, "keys", "list", "--json").stdout)
    mine = next(k for k in listed if k["name"] == "cli key")
    assert mine["scopes"] == ["call:test/echo"]
    assert secret not in json.dumps(listed)
    assert run(server, "call", "test/echo@1.0.0", "1", key=secret).returncode == 0
    forbidden = run(server, "call", "test/strict", '{"text": "x"}', key=secret)
    assert forbidden.returncode == 1
    assert "lacks scope" in forbidden.stderr
    assert run(server, "keys", "revoke", mine["id"]).returncode == 0
    revoked = run(server, "call", "test/echo@1.0.0", "1", key=secret)
    assert revoked.returncode == 1


def test_push_errors(server: ModelbusServer, tmp_path: Path) -> None:
    empty = run(server, "models", "push", str(tmp_path))
    assert empty.returncode == 1
    assert "modelbus.toml" in empty.stderr
    both = run(
        server, "models", "push", str(MODELS_DIR / "echo"), "--version", "1.0.0", "--bump", "minor"
    )
    assert both.returncode == 2


def run_bare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``modelbus ARGS`` with neither MODELBUS_URL nor MODELBUS_API_KEY (plus ``env``)."""
    return subprocess.run(
        [MODELBUS, *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        check=False,
        timeout=120,
    )


def test_errors_say_what_to_do_in_cli_terms(server: ModelbusServer) -> None:
    no_key = run_bare("call", "test/echo@1.0.0", "1", "--url", server.url)
    assert no_key.returncode == 1
    assert "no API key: give --key KEY or set MODELBUS_API_KEY" in no_key.stderr
    assert "Authorization" not in no_key.stderr  # an HTTP header is not what a CLI user sets
    assert no_key.stderr.count("error:") == 1
    with_env = run_bare(
        "call", "test/echo@1.0.0", "1", env={"MODELBUS_URL": server.url, "MODELBUS_API_KEY": "x"}
    )
    assert with_env.returncode == 1
    assert "check --key or MODELBUS_API_KEY" in with_env.stderr
    unreachable = run_bare("models", "list", "--url", "http://127.0.0.1:9", "--key", "x")
    assert (
        "`modelbus serve`" in unreachable.stderr
        and "--url URL or MODELBUS_URL" in unreachable.stderr
    )
    missing = run(server, "call", "test/nothing", "1")
    assert "`modelbus models list`" in missing.stderr
    created = run(server, "keys", "create", "narrow", "--scope", "call:test/echo")
    push = run(server, "models", "push", str(MODELS_DIR / "echo"), key=created.stdout.strip())
    assert push.returncode == 1
    assert "modelbus keys create NAME --scope SCOPE" in push.stderr


def test_a_failed_build_is_told_once(server: ModelbusServer, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "modelbus.toml").write_text(
        '[model]\nowner = "test"\nname = "broken"\n[runtime]\nentrypoint = "model:apply"\n'
    )
    (folder / "model.py").write_text("def apply(x:\n    return x\n")
    failed = run(server, "models", "push", str(folder), "--version", "1.0.0")
    assert failed.returncode == 1
    assert failed.stderr.count("== build of test/broken") == 1  # the log, streamed, not repeated
    assert failed.stderr.count("error: the model cannot be launched") == 1
    assert "[runtime] entrypoint" in failed.stderr  # a build log line is not read as markup


def test_a_model_importing_an_undeclared_package_fails_its_push(
    server: ModelbusServer, tmp_path: Path
) -> None:
    folder = tmp_path / "undeclared"
    folder.mkdir()
    (folder / "modelbus.toml").write_text(
        '[model]\nowner = "test"\nname = "undeclared"\n[runtime]\nentrypoint = "model:apply"\n'
    )
    (folder / "model.py").write_text("import no_such_package_xyz\n\ndef apply(x):\n    return x\n")
    failed = run(server, "models", "push", str(folder), "--version", "1.0.0")
    assert failed.returncode == 1
    told = (
        "error: the model cannot be launched: model imports `no_such_package_xyz`, which its "
        "environment lacks: add `no_such_package_xyz` to [runtime] requirements in modelbus.toml"
    )
    assert told in failed.stderr
    assert failed.stderr.count("error: the model cannot be launched") == 1
    assert run(server, "call", "test/undeclared", "1").returncode == 1  # no version was made


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_busy_port_is_refused_before_anything_is_done(command: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        data = tmp_path / "data"
        result = run_bare(command, "--port", str(port), "--data-dir", str(data))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "--port" in result.stderr
    assert "mb_" not in result.stdout + result.stderr  # no key was printed
    assert not data.exists()  # nor a data directory made


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["runs", "list", "--limit", "0"], "--limit"),
        (["runs", "list", "--limit", "1001"], "--limit"),
        (["dead-letters", "list", "--limit", "-5"], "--limit"),
        (["runs", "list", "--status", "bogus"], "--status"),
        (["runs", "list", "--since", "nan"], "--since"),
        (["runs", "list", "--since", "1e400"], "--since"),
        (["dead-letters", "list", "--until", "99999999999999d"], "--until"),
        (["dead-letters", "redrive", "--all", "--rate", "nan"], "--rate"),
        (["dead-letters", "redrive", "--all", "--rate", "inf"], "--rate"),
        (["dead-letters", "redrive", "some-listener", "--rate", "0"], "--rate"),
        (["dead-letters", "redrive", "--all", "--rate", "20000"], "--rate"),
    ],
)
def test_search_values_the_server_would_refuse_are_usage_errors(
    args: list[str], option: str
) -> None:
    """Status 2, the option named, no traceback, and no request made (the URL is a closed
    port: reaching for it would end with status 1)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    result = run_bare(*args, "--url", url, "--key", "mb_0000000000000000_x")
    assert result.returncode == 2, result.stderr
    assert option in result.stderr and "Traceback" not in result.stderr
