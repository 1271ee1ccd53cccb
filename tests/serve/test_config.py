"""``modelbus serve --config FILE``: listeners declared in a file, applied at start."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.server import MODELBUS, clean_env, free_port, running_server

LISTENERS = """
[[listeners]]
name = "from-file"
source = "local://file-in"
model = "test/echo@1.*"
outputs = ["local://file-out"]

[listeners.retry]
max_attempts = 3
"""


def serve_fails(tmp_path: Path, text: str) -> str:
    config = tmp_path / "listeners.toml"
    config.write_text(text)
    argv = [MODELBUS, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(
        [*argv, "--config", str(config)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    return done.stderr


def test_listener_file_is_applied_at_start_and_kept_or_pruned(tmp_path: Path) -> None:
    config = tmp_path / "listeners.toml"
    config.write_text(LISTENERS)
    with running_server(tmp_path / "data", args=["--config", str(config)]) as server:
        with server.client() as mb:
            [listener] = mb.listeners()
            assert listener.name == "from-file"
            assert listener.definition.retry.max_attempts == 3
            assert listener.status.state in ("starting", "running")
            mb.create_listener(  # no model pushed here: stored unchecked
                {"name": "made-by-hand", "source": "local://hand-in", "model": "test/echo"},
                check=False,
            )

        config.write_text(LISTENERS.replace("max_attempts = 3", "max_attempts = 7"))
        server.restart()
        with server.client() as mb:
            found = {x.name: x for x in mb.listeners()}
        assert found["from-file"].definition.retry.max_attempts == 7  # updated
        assert "made-by-hand" in found  # kept: apply, not prune
        assert "applied: created none, updated ['from-file']" in server.log()

        server.args = ("--config", str(config), "--prune")
        server.restart()
        with server.client() as mb:
            assert [x.name for x in mb.listeners()] == ["from-file"]


def test_a_bad_file_stops_the_start_naming_file_and_listener(tmp_path: Path) -> None:
    broken_url = LISTENERS.replace('"local://file-in"', '"local://file-in?bogus=1"')
    said = serve_fails(tmp_path, broken_url)
    assert "listeners.toml" in said
    assert "'from-file'" in said
    assert "unknown option 'bogus'" in said

    said = serve_fails(tmp_path, LISTENERS.replace('"test/echo@1.*"', '"test/echo@x"'))
    assert "listeners.toml: listeners[0]" in said
    assert "version spec" in said

    said = serve_fails(tmp_path, "[[listeners]\nname=")
    assert "not valid TOML" in said


def test_a_folder_outside_the_roots_or_in_the_data_dir_stops_the_start(tmp_path: Path) -> None:
    inside = f'[[listeners]]\nname = "peek"\nsource = "dir://{tmp_path / "d"}"\nmodel = "a/b@1.*"\n'
    said = serve_fails(tmp_path, inside)
    assert "peek" in said and "data directory" in said
    (tmp_path / "elsewhere").mkdir()
    outside = inside.replace(str(tmp_path / "d"), str(tmp_path / "elsewhere"))
    config = tmp_path / "listeners.toml"
    config.write_text(outside)
    argv = [MODELBUS, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(
        [*argv, "--config", str(config), "--dir-roots", str(tmp_path / "drop")],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert str(tmp_path / "drop") in done.stderr and "--dir-roots" in done.stderr
