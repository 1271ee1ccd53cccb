"""Credentials: masked in URLs, text and logs (modelbus.connectors.urls); sealed in the store
(modelbus.listeners.credentials over modelbus.store.secrets)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from modelbus.connectors.urls import credentials_of, redact_text, redact_url, restore_url
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
        ("amqp://app:hunter22@rabbit:5672/vh", "amqp://***@rabbit:5672/***", ["hunter22"]),
        ("redis://:tok3n@h:6379/0", "redis://***@h:6379/***", ["tok3n"]),
        ("amqp://app:p%40ss@h/", "amqp://***@h/", ["p%40ss", "p@ss"]),
        (
            "kafka://u:pw12@b1:9092,b2:9092/t?sasl_password=zz99&group=g",
            "kafka://***@b1:9092,b2:9092/***?sasl_password=***&group=***",
            ["pw12", "zz99"],
        ),
        (
            "https://hooks.example/in?secret=s3cr3t&x=1#frag",
            "https://hooks.example/***?secret=***&x=***#***",
            ["s3cr3t"],
        ),
        (
            "nats://h:4222/s?token=abcd&Password=efgh",
            "nats://h:4222/***?token=***&Password=***",
            None,
        ),
        ("local://jobs?lease_s=3", "local://jobs?lease_s=***", []),
        ("dir:///srv/in box", "dir:///***/***", []),
        ("mqtt://user@h/t", "mqtt://***@h/***", []),  # a user name: masked by shape only
        ("postgresql://postgres@db/test", "postgresql://***@db/***", []),
        ("nats://s3cr3tToken@h:4222/s", "nats://***@h:4222/***", ["s3cr3tToken"]),
        ("nats://u:pw99@h:4222/s", "nats://***@h:4222/***", ["pw99"]),
        # The shapes issue 14 found shown in clear: every one is a secret now.
        (
            "https://hooks.slack.com/services/T0AB12CD3/B0XY9Z8W7/abcdefghijklmnopqrstuvwx",
            "https://hooks.slack.com/***/***/***/***",
            ["T0AB12CD3", "B0XY9Z8W7", "abcdefghijklmnopqrstuvwx"],
        ),
        ("https://fn.example/api/run?code=c0de-XYZ", "https://fn.example/***/***?code=***", None),
        (
            "https://blob.example/c/b?sv=1&sig=S1gn%2Fd",
            "https://blob.example/***/***?sv=***&sig=***",
            None,
        ),
        ("https://api.example/v1?key=AIzaK3y", "https://api.example/***?key=***", ["AIzaK3y"]),
        ("https://api.example/x?auth=Aut4h", "https://api.example/***?auth=***", ["Aut4h"]),
        (
            "https://T0k3nValue@gw.example:8443/in",
            "https://***@gw.example:8443/***",
            ["T0k3nValue"],
        ),
        (
            "redis://R3d1sT0ken@cache:6379/0?stream=s",
            "redis://***@cache:6379/***?stream=***",
            ["R3d1sT0ken"],
        ),
        ("not a url", "***", []),
    ],
)
def test_every_url_is_shown_by_its_shape(url: str, shown: str, secrets: list[str] | None) -> None:
    assert redact_url(url) == shown
    if secrets is not None:
        assert sorted(set(credentials_of(url))) == sorted(set(secrets))


def test_text_shows_every_url_by_its_shape_and_masks_known_values() -> None:
    text = (
        "cannot connect to amqp://app:hunter22@rabbit/ (token=abc123&x=1); "
        "server said: password hunter22 refused for 'app'; other=fine; "
        "POST https://hooks.slack.com/services/T0/B0/XyZ failed (see 'redis://R3d1s@h:6379/0')."
    )
    assert redact_text(text) == (
        "cannot connect to amqp://***@rabbit/ (token=***&x=1); "
        "server said: password hunter22 refused for 'app'; other=fine; "
        "POST https://hooks.slack.com/***/***/***/*** failed (see 'redis://***@h:6379/***')."
    )
    assert "hunter22" not in redact_text(text, ["hunter22"])
    assert redact_text("connecting to nats://t0k3n@h:4222 failed") == (
        "connecting to nats://***@h:4222 failed"
    )
    assert redact_text("bad sig=S1gnature and code=c0de") == "bad sig=*** and code=***"


@pytest.mark.parametrize(
    ("stored", "given", "restored"),
    [
        # every *** filled from the stored URL: its user info, path, option values, fragment
        ("amqp://app:pw@h:5672/vh?queue=q", "amqp://***@h:5672/***?queue=***", None),
        ("https://h/services/T0/B0/SECRET#f", "https://h/***/***/***/***#***", None),
        # an edited part is kept, the *** around it restored
        (
            "redis://:pw@h:6379/0?stream=orders",
            "redis://***@h:6379/***?stream=invoices",
            "redis://:pw@h:6379/0?stream=invoices",
        ),
        (
            "https://h/a/SECRET?sig=S",
            "https://h/a/***?sig=***&timeout_s=5",
            "https://h/a/SECRET?sig=S&timeout_s=5",
        ),
        # no *** at all: kept as given
        ("amqp://app:pw@h/", "amqp://app:new@h/", "amqp://app:new@h/"),
    ],
)
def test_a_redacted_url_is_restored_from_the_stored_one(
    stored: str, given: str, restored: str | None
) -> None:
    assert restore_url(given, stored) == (restored or stored)


@pytest.mark.parametrize(
    ("stored", "given", "why"),
    [
        ("amqp://app:pw@h/", "amqp://***@elsewhere/", "scheme or host"),
        ("amqp://app:pw@h/", "amqps://***@h/", "scheme or host"),
        ("https://h/a", "https://h/***/***", "path"),
        ("https://h/a?x=1", "https://h/a?y=***", "option 'y'"),
        ("https://h/a", "https://***@h/a", "user info"),
    ],
)
def test_a_placeholder_no_stored_value_fills_is_refused(stored: str, given: str, why: str) -> None:
    with pytest.raises(DefinitionError, match=why) as refused:
        restore_url(given, stored)
    assert "pw" not in str(refused.value)


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


def test_sealed_definitions_keep_no_url_in_clear_and_open_again(tmp_path: Path) -> None:
    box = Credentials(SecretBox.load(tmp_path))
    stored = box.seal(definition())
    text = repr(stored)
    for secret in ("hunter22", "s3cr3t", "tok3n", "orders", "dead"):
        assert secret not in text
    assert stored["source"] == "amqp://***@rabbit/***"
    assert stored["outputs"] == ["local://plain", "kafka://k:9092/***?sasl_password=***"]
    assert set(stored["sealed"]) == {"source", "outputs.0", "outputs.1", "error_sink"}
    assert ListenerDefinition.from_mapping(box.open(stored)) == definition()

    with pytest.raises(DefinitionError, match="cannot be decrypted"):
        Credentials(SecretBox.load(tmp_path / "other")).open(stored)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T0/B0/SECRETxyz",
        "https://fn.example/api/run?code=SECRETxyz",
        "https://blob.example/c/b?sig=SECRETxyz",
        "https://api.example/v1?key=SECRETxyz",
        "https://api.example/x?auth=SECRETxyz",
        "https://SECRETxyz@gw.example/in",
        "redis://SECRETxyz@cache:6379/0?stream=s",
    ],
)
def test_each_url_shape_of_issue_14_is_sealed_and_shown_redacted(tmp_path: Path, url: str) -> None:
    box = Credentials(SecretBox.load(tmp_path))
    given = definition(outputs=[url])
    stored = box.seal(given)
    assert "SECRETxyz" not in repr(stored)
    assert "SECRETxyz" not in redact_definition(given).model_dump_json()
    assert ListenerDefinition.from_mapping(box.open(stored)) == given
    assert "SECRETxyz" not in box.redact(f"POST {url} answered 500")


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
    assert shown.source == "amqp://***@rabbit/***"
    assert shown.outputs == ["local://plain", "kafka://k:9092/***?sasl_password=***"]
    edited = shown.model_copy(update={"max_in_flight": 3})
    restored = restore_masked(edited, definition())
    assert restored == definition().model_copy(update={"max_in_flight": 3})
    # outputs reordered: each is filled from the stored URL of its shape
    swapped = edited.model_copy(update={"outputs": list(reversed(shown.outputs))})
    assert restore_masked(swapped, definition()).outputs == list(reversed(definition().outputs))
    # a stored secret never goes to another host, nor into a new listener
    moved = edited.model_copy(update={"source": "amqp://***@elsewhere/***"})
    with pytest.raises(DefinitionError, match="scheme or host"):
        restore_masked(moved, definition())
    with pytest.raises(DefinitionError, match="no stored URL"):
        restore_masked(edited, None)


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
    assert "amqp://***@r/" in line
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


async def test_logs_show_every_listener_url_by_its_shape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14's shapes in log lines: the URL by its shape wherever it is written, and its
    token-like pieces by value when a library writes them alone."""
    from modelbus.config import Settings
    from modelbus.web.server import open_services

    hook = "https://hooks.slack.com/services/T0AB12CD3/B0XY9Z8W7/abcdEFGH1234ijklMNOP5678"
    keyed = "https://api.example/v1?key=AIzaK3yValue1&sig=S1gnatureXYZ9"
    settings = Settings.from_env({}, data_dir=tmp_path / "data")
    with caplog.at_level(logging.INFO):
        async with open_services(settings, announce=lambda key: None) as services:
            given = definition(source="local://in", outputs=[hook, keyed], enabled=False)
            await services.listeners.create(given, check=False)
            library = logging.getLogger("httpx")
            library.warning("HTTP Request: POST %s %r", hook, "HTTP/1.1 500")
            library.warning("retrying %s: url=%s", keyed, repr(keyed))
            library.warning("path piece abcdEFGH1234ijklMNOP5678 and key AIzaK3yValue1 alone")
    logged = caplog.text
    for secret in ("T0AB12CD3", "abcdEFGH1234ijklMNOP5678", "AIzaK3yValue1", "S1gnatureXYZ9"):
        assert secret not in logged, secret
    assert "POST https://hooks.slack.com/***/***/***/***" in logged
    assert "https://api.example/***?key=***&sig=***" in logged
