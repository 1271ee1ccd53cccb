"""Credentials: masked in URLs, text and logs (modelbus.connectors.urls); sealed in the store
(modelbus.listeners.credentials over modelbus.store.secrets)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from modelbus.connectors.urls import credentials_of, redact_text, redact_url
from modelbus.errors import DefinitionError, InvalidInput
from modelbus.listeners.credentials import (
    Credentials,
    RedactingFilter,
    redact_definition,
    restore_masked,
)
from modelbus.listeners.definition import ListenerDefinition
from modelbus.store.secrets import SecretBox


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        ("amqp://app:hunter22@rabbit:5672/vh", "amqp://app:***@rabbit:5672/vh", ["hunter22"]),
        ("redis://:tok3n@h:6379/0", "redis://:***@h:6379/0", ["tok3n"]),
        ("amqp://app:p%40ss@h/", "amqp://app:***@h/", ["p%40ss", "p@ss"]),
        (
            "kafka://u:pw12@b1:9092,b2:9092/t?sasl_password=zz99&group=g",
            "kafka://u:***@b1:9092,b2:9092/t?sasl_password=***&group=g",
            ["pw12", "zz99"],
        ),
        (
            "https://hooks.example/in?secret=s3cr3t&x=1#frag",
            "https://hooks.example/in?secret=***&x=1#frag",
            ["s3cr3t"],
        ),
        (
            "nats://h:4222/s?token=abcd&Password=efgh",
            "nats://h:4222/s?token=***&Password=***",
            None,
        ),
        ("local://jobs?lease_s=3", "local://jobs?lease_s=3", []),
        ("dir:///srv/in box", "dir:///srv/in box", []),
        ("mqtt://user@h/t", "mqtt://user@h/t", []),
        ("nats://s3cr3tToken@h:4222/s", "nats://***@h:4222/s", ["s3cr3tToken"]),
        ("nats://u:pw99@h:4222/s", "nats://u:***@h:4222/s", ["pw99"]),
    ],
)
def test_urls_are_masked_and_nothing_else_changes(
    url: str, shown: str, secrets: list[str] | None
) -> None:
    assert redact_url(url) == shown
    if secrets is not None:
        assert sorted(credentials_of(url)) == sorted(secrets)


def test_text_is_masked_by_shape_and_by_value() -> None:
    text = (
        "cannot connect to amqp://app:hunter22@rabbit/ (token=abc123&x=1); "
        "server said: password hunter22 refused for 'app'; other=fine"
    )
    assert redact_text(text) == (
        "cannot connect to amqp://app:***@rabbit/ (token=***&x=1); "
        "server said: password hunter22 refused for 'app'; other=fine"
    )
    assert "hunter22" not in redact_text(text, ["hunter22"])
    assert redact_text("connecting to nats://t0k3n@h:4222 failed") == (
        "connecting to nats://***@h:4222 failed"
    )


def definition(**urls: object) -> ListenerDefinition:
    return ListenerDefinition.from_mapping(
        {
            "name": "creds",
            "source": "amqp://app:hunter22@rabbit/orders",
            "model": "acme/m",
            "outputs": ["local://plain", "kafka://k:9092/r?sasl_password=s3cr3t"],
            "error_sink": "mqtt://dev:tok3n@h:1883/dead",
            **urls,
        }
    )


def test_sealed_definitions_keep_no_plaintext_and_open_again(tmp_path: Path) -> None:
    box = Credentials(SecretBox.load(tmp_path))
    stored = box.seal(definition())
    text = repr(stored)
    for secret in ("hunter22", "s3cr3t", "tok3n"):
        assert secret not in text
    assert stored["source"] == "amqp://app:***@rabbit/orders"
    assert stored["outputs"][0] == "local://plain"
    assert set(stored["sealed"]) == {"source", "outputs.1", "error_sink"}
    assert ListenerDefinition.from_mapping(box.open(stored)) == definition()

    with pytest.raises(DefinitionError, match="cannot be decrypted"):
        Credentials(SecretBox.load(tmp_path / "other")).open(stored)


def test_the_key_file_is_private_reused_and_keys_rotate(tmp_path: Path) -> None:
    first = Credentials(SecretBox.load(tmp_path))
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = first.seal(definition())
    assert (
        Credentials(SecretBox.load(tmp_path))
        .open(stored)["source"]
        .startswith("amqp://app:hunter22@")
    )

    old_key = key_file.read_text().strip()
    rotated = Credentials(SecretBox.load(tmp_path / "x", f"{SecretBox.new_key()},{old_key}"))
    assert rotated.open(stored)["error_sink"].startswith("mqtt://dev:tok3n@")
    resealed = rotated.seal(definition())
    with pytest.raises(DefinitionError):
        first.open(resealed)  # the new key encrypts now
    with pytest.raises(InvalidInput, match="secret-key"):
        SecretBox.load(tmp_path, "not-a-key")


def test_masked_definitions_are_shown_and_restored() -> None:
    shown = redact_definition(definition())
    assert shown.source == "amqp://app:***@rabbit/orders"
    assert shown.outputs[1] == "kafka://k:9092/r?sasl_password=***"
    edited = shown.model_copy(update={"max_in_flight": 3})
    restored = restore_masked(edited, definition())
    assert restored == definition().model_copy(update={"max_in_flight": 3})
    moved = edited.model_copy(update={"source": "amqp://app:***@elsewhere/orders"})
    assert restore_masked(moved, definition()).source == "amqp://app:***@elsewhere/orders"


def test_the_log_filter_masks_messages_and_tracebacks(tmp_path: Path) -> None:
    box = Credentials(SecretBox.load(tmp_path))
    box.seal(definition())  # it now knows the credentials by value
    try:
        raise RuntimeError("login failed with tok3n at redis://:tok3n@h")
    except RuntimeError:
        record = logging.LogRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "opening %s failed",
            ("amqp://app:hunter22@r/",),
            exc_info=__import__("sys").exc_info(),
        )
    RedactingFilter(box).filter(record)
    line = logging.Formatter().format(record)
    assert "hunter22" not in line
    assert "tok3n" not in line
    assert "amqp://app:***@r/" in line
    assert "RuntimeError" in line


async def test_the_server_masks_credentials_in_every_log_handler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from modelbus.config import Settings
    from modelbus.web.server import open_services

    settings = Settings.from_env({}, data_dir=tmp_path / "data")
    with caplog.at_level(logging.INFO):
        async with open_services(settings, announce=lambda key: None) as services:
            shown = definition(
                source="local://in",
                outputs=["kafka://k:9092/r?sasl_password=s3cr3t"],
                enabled=False,  # stored, never opened
            )
            await services.listeners.create(shown, check=False)
            logging.getLogger("some.library").warning(
                "retrying %s after: auth failed for s3cr3t and hunter22",
                "kafka://k:9092/r?sasl_password=s3cr3t",
            )
    logged = caplog.text
    assert "sasl_password=***" in logged
    assert "s3cr3t" not in logged
    assert "tok3n" not in logged
    assert "hunter22" in logged  # not a credential of any listener here
