"""The ``modelbus listeners | runs | dead-letters`` commands against a real server."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modelbus.client import Client
from tests.support.server import MODELBUS, ModelbusServer, clean_env

from .conftest import eventually, publish, unique

COMMANDS = [
    ([], ["listeners", "runs", "dead-letters", "secret-key", "demo"]),
    (["serve"], ["--config", "--prune", "--metrics-public", "--stop-deadline"]),
    (
        ["listeners", "create"],
        [
            "--name",
            "--source",
            "--model",
            "--output",
            "--error-sink",
            "--max-attempts",
            "--initial-backoff",
            "--max-backoff",
            "--backoff-multiplier",
            "--jitter",
            "--batch-size",
            "--batch-wait-ms",
            "--max-in-flight",
            "--timeout",
            "--filter",
            "--output-mode",
            "--disabled",
            "--no-extend-lease",
            "--file",
            "--no-check",
            "--json",
        ],
    ),
    (["listeners", "apply"], ["--prune", "--no-check", "--json"]),
    (["listeners", "list"], ["--json", "--url", "--key"]),
    (["listeners", "status"], ["--json"]),
    (["listeners", "pause"], ["--url", "--key"]),
    (["listeners", "resume"], ["--url", "--key"]),
    (["listeners", "delete"], ["--url", "--key"]),
    (["runs", "get"], ["--listener", "--json"]),
    (
        ["runs", "list"],
        ["--status", "--message-id", "--object-key", "--since", "--until", "--limit", "--cursor"],
    ),
    (
        ["dead-letters", "list"],
        ["--pending", "--message-id", "--object-key", "--since", "--until", "--cursor", "--json"],
    ),
    (["dead-letters", "show"], ["--body-out", "--json"]),
    (
        ["dead-letters", "redrive"],
        ["--id", "--object-key", "--since", "--until", "--include-redriven", "--all", "--to"],
    ),
]


@pytest.mark.parametrize(("command", "flags"), COMMANDS)
def test_help_documents_every_flag(command: list[str], flags: list[str]) -> None:
    done = subprocess.run(
        [MODELBUS, *command, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    for flag in flags:
        assert flag in done.stdout, f"{flag} missing from `modelbus {' '.join(command)} --help`"


def mb(server: ModelbusServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        {"MODELBUS_URL": server.url, "MODELBUS_API_KEY": server.admin_key, "COLUMNS": "250"}
    )
    return subprocess.run(
        [MODELBUS, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def ok(server: ModelbusServer, *args: str) -> str:
    done = mb(server, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def as_json(server: ModelbusServer, *args: str) -> Any:
    return json.loads(ok(server, *args, "--json"))


def test_listener_lifecycle_from_the_command_line(server: ModelbusServer) -> None:
    name = unique("cli")
    ok(
        server,
        "listeners", "create", "--name", name, "--source", f"local://{name}-in?poll_ms=50",
        "--model", "test/echo@1.0.0", "--output", f"local://{name}-out", "--max-attempts", "2",
        "--filter", '{"body": {"go": [true]}}', "--output-mode", "raw",
    )  # fmt: skip
    [listed] = [x for x in as_json(server, "listeners", "list") if x["name"] == name]
    definition = listed["definition"]
    assert definition["retry"]["max_attempts"] == 2
    assert definition["output_mode"] == "raw"
    assert definition["filter"] == {"body": {"go": [True]}}

    publish(server.data_dir, f"{name}-in", ("go-1", b'{"go": true}'), ("skip-1", b'{"go": 0}'))
    eventually(lambda: as_json(server, "runs", "get", "go-1", "--listener", name))
    table = ok(server, "listeners", "status", name)
    assert "succeeded" in table and "1.0.0" in table
    filtered = re.compile(r"skipped: filtered\s+│ 1 ")
    eventually(lambda: filtered.search(ok(server, "listeners", "status", name)))
    run_table = ok(server, "runs", "get", "go-1")
    assert "succeeded" in run_table and name in run_table

    assert "paused" in ok(server, "listeners", "pause", name)
    assert "paused" in ok(server, "listeners", "list")
    assert "resume" not in mb(server, "listeners", "resume", name).stderr
    assert "deleted" in ok(server, "listeners", "delete", name)
    missing = mb(server, "listeners", "status", name)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


def test_apply_a_listener_file(server: ModelbusServer, tmp_path: Path) -> None:
    a, b = unique("file-a"), unique("file-b")
    file = tmp_path / "listeners.toml"
    file.write_text(
        "".join(
            f'[[listeners]]\nname = "{n}"\nsource = "local://{n}"\nmodel = "test/echo"\n\n'
            for n in (a, b)
        )
    )
    assert sorted(as_json(server, "listeners", "apply", str(file))["created"]) == sorted([a, b])
    assert f"unchanged: {a}, {b}" in ok(server, "listeners", "apply", str(file))

    file.write_text(file.read_text().replace('model = "test/echo"', 'model = "test/echo@x"', 1))
    refused = mb(server, "listeners", "apply", str(file))
    assert refused.returncode == 1
    assert f"{file}: listeners[0]" in refused.stderr
    assert "version spec" in refused.stderr
    for n in (a, b):
        ok(server, "listeners", "delete", n)


def test_create_refuses_incomplete_flags(server: ModelbusServer) -> None:
    done = mb(server, "listeners", "create", "--name", "x")
    assert done.returncode == 2
    assert "--source" in done.stderr


def test_dead_letters_list_show_and_redrive(
    server: ModelbusServer, admin: Client, tmp_path: Path
) -> None:
    name = unique("cli-dead")
    admin.create_listener(
        {
            "name": name,
            "source": f"local://{name}-in?poll_ms=50",
            "model": "test/echo@7.*",  # nothing to run yet: dead-lettered after one attempt
            "retry": {"max_attempts": 1},
        },
        check=False,  # checked, a spec that resolves to nothing is refused
    )
    publish(server.data_dir, f"{name}-in", ("d-1", b'{"x": 1}'))
    [letter] = eventually(lambda: as_json(server, "dead-letters", "list", name))
    assert letter["message_id"] == "d-1"
    assert "VersionNotFound" in ok(server, "dead-letters", "list", name)

    body = tmp_path / "body.json"
    shown = ok(server, "dead-letters", "show", letter["id"], "--body-out", str(body))
    assert '{"x": 1}' in shown
    assert body.read_bytes() == b'{"x": 1}'

    redriven = ok(server, "dead-letters", "redrive", name, "--to", "2.*", "--rate", "20")
    assert "test/echo@2.*: 1 succeeded" in redriven
    assert as_json(server, "dead-letters", "list", name, "--pending") == []
    [run] = as_json(server, "runs", "get", "d-1", "--listener", name)
    assert (run["status"], run["version"]) == ("succeeded", "2.0.0")
    admin.delete_listener(name)
