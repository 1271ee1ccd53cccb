"""A listeners:manage key cannot aim a listener at the server itself, a cloud metadata
service or (by default) loopback (issue 14.3), through a real ``modelbus serve``."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbus.client import Client
from modelbus.errors import DefinitionError, ModelbusError
from tests.support.server import ModelbusServer


def listener(name: str, sink: str) -> dict[str, object]:
    return {
        "name": name,
        "source": f"local://{name}-in",
        "model": "test/echo@1.*",
        "outputs": [sink],
    }


@pytest.mark.parametrize(
    "sink",
    [
        "http://127.0.0.1:{port}/v1/keys",
        "http://localhost:{port}/v1/keys",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
@pytest.mark.parametrize("check", [True, False])
def test_a_sink_at_the_server_or_the_metadata_service_is_refused(
    server: ModelbusServer, admin: Client, sink: str, check: bool
) -> None:
    url = sink.format(port=server.port)
    with pytest.raises(ModelbusError) as refused:
        admin.create_listener(listener("ssrf", url), check=check)
    assert isinstance(refused.value, DefinitionError), refused.value
    assert "own API" in str(refused.value) or "metadata" in str(refused.value)
    assert all(info.name != "ssrf" for info in admin.listeners())


def test_a_fresh_server_refuses_loopback_until_allowed(tmp_path: Path) -> None:
    env = {"MODELBUS_ALLOW_HOSTS": ""}  # as a fresh `modelbus serve` runs
    with ModelbusServer.start(tmp_path / "data", env=env) as fresh, fresh.client() as client:
        with pytest.raises(DefinitionError, match="--allow-hosts"):
            client.create_listener(
                listener("local", "redis://127.0.0.1:6379?stream=s"), check=False
            )
        with pytest.raises(DefinitionError, match="--allow-hosts"):
            client.create_listener(listener("hook", "http://127.0.0.1:1/x"), check=False)
        client.create_listener(listener("embedded", "local://results"), check=False)
