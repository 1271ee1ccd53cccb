"""Broker credentials: encrypted in the store, ``***`` everywhere they could be shown.

A credential is whatever a connector URL carries that opens a door:

* the password of the URL's user info (``amqp://app:PASSWORD@host/``), or the whole user
  info where it is a token (``nats://TOKEN@host``, :data:`TOKEN_USERINFO_SCHEMES`);
* the value of a query option named like a secret (:data:`SECRET_OPTIONS`: ``password``,
  ``token``, ``sasl_password``, ``secret`` — a webhook's HMAC secret —, ...).

**At rest.** :meth:`SecretBox.seal` turns a listener definition into what the ``listeners``
table stores: the definition with every credential replaced by ``***``, plus a ``sealed``
map from the field (``source``, ``outputs.0``, ``error_sink``) to that field's whole URL,
encrypted with Fernet (AES-128-CBC + HMAC-SHA256). :meth:`SecretBox.open` restores it. So
the stored row shows where a listener connects, never how it authenticates.

**The key.** ``MODELBUS_SECRET_KEY`` (one Fernet key, or several separated by commas: the
first encrypts, all decrypt, for rotation), else the key file ``DATA_DIR/secret.key``,
created with mode 0600 on the first start. Several nodes sharing one PostgreSQL store need
the same key: set ``MODELBUS_SECRET_KEY`` on each (make one with ``modelbus secret-key``).

**On the way out.** The API shows definitions through :func:`redact_definition`; every error
message and every log line goes through :meth:`SecretBox.redact` (:class:`RedactingFilter`
for logs), which masks URL passwords and secret options by their shape, plus every
credential the box has seen by its value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from modelbus.errors import DefinitionError, InvalidInput
from modelbus.listeners.definition import ListenerDefinition

__all__ = [
    "KEY_FILE",
    "MASK",
    "SECRET_OPTIONS",
    "RedactingFilter",
    "SecretBox",
    "credentials_of",
    "redact_definition",
    "redact_text",
    "redact_url",
    "restore_masked",
]

MASK = "***"
KEY_FILE = "secret.key"
SECRET_OPTIONS = frozenset(
    {
        "password",
        "passwd",
        "token",
        "secret",
        "sasl_password",
        "api_key",
        "apikey",
        "access_token",
        "secret_access_key",
        "aws_secret_access_key",
        "session_token",
    }
)
# Schemes whose user info without a password is a token (a credential), not a user name.
TOKEN_USERINFO_SCHEMES = frozenset({"nats", "tls"})
# Credentials shorter than this are masked by shape only (masking "a" everywhere by value
# would garble every message).
MIN_KNOWN_LENGTH = 4

_OPTIONS = "|".join(sorted(SECRET_OPTIONS, key=len, reverse=True))
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)[^\s@/'\"]+@")
_URL_TOKEN = re.compile(r"(?i)\b((?:nats|tls)://)[^\s/:@'\"]+@")
_OPTION_VALUE = re.compile(rf"(?i)\b({_OPTIONS})=([^&\s'\"#)]+)")


# --- URLs and definitions -----------------------------------------------------------------


def _split_userinfo(netloc: str) -> tuple[str | None, str]:
    userinfo, at, host = netloc.rpartition("@")
    return (userinfo, host) if at else (None, netloc)


def _url_parts(url: str) -> tuple[str, str, str, str]:
    """(scheme + '//', netloc, path, rest from '?'), without re-encoding anything."""
    scheme, sep, after = url.partition("://")
    if not sep:
        return "", "", url, ""
    end = len(after)
    for mark in "/?#":
        found = after.find(mark)
        if found != -1:
            end = min(end, found)
    netloc, tail = after[:end], after[end:]
    path, q, query = tail.partition("?")
    return scheme + "://", netloc, path, (q + query)


def _is_secret_option(piece: str) -> bool:
    name, eq, _ = piece.partition("=")
    return bool(eq) and unquote(name).lower() in SECRET_OPTIONS


def _token_scheme(head: str) -> bool:
    return head.removesuffix("://").lower() in TOKEN_USERINFO_SCHEMES


def redact_url(url: str) -> str:
    """``url`` with its user-info password (or token) and secret option values replaced by
    ``***``; everything else is kept exactly as written."""
    head, netloc, path, query = _url_parts(url)
    userinfo, host = _split_userinfo(netloc)
    if userinfo is not None and ":" in userinfo:
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{host}"
    elif userinfo and _token_scheme(head):
        netloc = f"{MASK}@{host}"
    if query:
        fragment_at = query.find("#")
        fragment = query[fragment_at:] if fragment_at != -1 else ""
        body = query[1 : len(query) - len(fragment)]
        pieces = [
            f"{p.partition('=')[0]}={MASK}" if _is_secret_option(p) else p for p in body.split("&")
        ]
        query = "?" + "&".join(pieces) + fragment
    return head + netloc + path + query


def credentials_of(url: str) -> list[str]:
    """The credentials ``url`` carries (as written and URL-decoded), for masking by value."""
    found: list[str] = []
    head, netloc, _, query = _url_parts(url)
    userinfo, _ = _split_userinfo(netloc)
    if userinfo is not None and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    elif userinfo and _token_scheme(head):
        found.append(userinfo)
    for piece in query.lstrip("?").split("#")[0].split("&"):
        if _is_secret_option(piece):
            found.append(piece.partition("=")[2])
    return [v for value in found for v in {value, unquote(value)} if value and value != MASK]


def _url_fields(definition: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field path, URL) for every connector URL of a definition's JSON form."""
    if isinstance(definition.get("source"), str):
        yield "source", definition["source"]
    outputs = definition.get("outputs")
    if isinstance(outputs, list):
        for i, url in enumerate(outputs):
            if isinstance(url, str):
                yield f"outputs.{i}", url
    if isinstance(definition.get("error_sink"), str):
        yield "error_sink", definition["error_sink"]


def _set_field(data: dict[str, Any], path: str, value: str) -> None:
    name, _, index = path.partition(".")
    if index:
        data[name][int(index)] = value
    else:
        data[name] = value


def redact_definition(definition: ListenerDefinition) -> ListenerDefinition:
    """The definition as the API shows it: every credential ``***``."""
    data = definition.model_dump(mode="json")
    for path, url in list(_url_fields(data)):
        _set_field(data, path, redact_url(url))
    return ListenerDefinition.model_validate(data)


def restore_masked(
    definition: ListenerDefinition, stored: ListenerDefinition | None
) -> ListenerDefinition:
    """``definition`` with each URL that still shows ``***`` where the stored definition has
    a credential replaced by the stored URL, when both are the same once redacted. So a
    definition read from the API (or exported) can be applied back without retyping
    passwords. URLs that differ in anything else are kept as given."""
    if stored is None:
        return definition
    old = dict(_url_fields(stored.model_dump(mode="json")))
    data = definition.model_dump(mode="json")
    changed = False
    for path, url in list(_url_fields(data)):
        previous = old.get(path)
        if MASK in url and previous is not None and redact_url(previous) == url:
            _set_field(data, path, previous)
            changed = True
    return ListenerDefinition.model_validate(data) if changed else definition


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with URL passwords, secret options and the ``known`` credentials masked."""
    text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    text = _URL_TOKEN.sub(rf"\1{MASK}@", text)
    text = _OPTION_VALUE.sub(rf"\1={MASK}", text)
    for secret in sorted(known, key=len, reverse=True):
        if len(secret) >= MIN_KNOWN_LENGTH:
            text = text.replace(secret, MASK)
    return text


# --- encryption -----------------------------------------------------------------------------


class SecretBox:
    """Encrypts listener credentials for the store and masks them everywhere else.

    Build with :meth:`load`. Thread-safe for reading; :meth:`remember` only ever adds."""

    def __init__(self, fernet: MultiFernet) -> None:
        self._fernet = fernet
        self._known: set[str] = set()

    @classmethod
    def load(cls, data_dir: Path, key: str | None = None) -> SecretBox:
        """Keys from ``key`` (comma-separated Fernet keys, the first one encrypting), else
        from ``data_dir/secret.key``, created (mode 0600) with a new key if missing.
        Raises :class:`InvalidInput` for a malformed key."""
        text = key if key else _key_file(data_dir / KEY_FILE)
        keys = [k.strip() for k in text.replace("\n", ",").split(",") if k.strip()]
        try:
            return cls(MultiFernet([Fernet(k) for k in keys]))
        except (ValueError, TypeError):
            source = "MODELBUS_SECRET_KEY" if key else str(data_dir / KEY_FILE)
            raise InvalidInput(
                f"{source} does not hold a valid Fernet key (32 url-safe base64 bytes); "
                "make one with `modelbus secret-key`"
            ) from None

    @staticmethod
    def new_key() -> str:
        """A new random key, as ``MODELBUS_SECRET_KEY`` takes it."""
        return Fernet.generate_key().decode("ascii")

    def seal(self, definition: ListenerDefinition) -> dict[str, Any]:
        """The stored form of ``definition``: credentials masked, and the URLs that carry
        them encrypted under ``sealed``."""
        data = definition.model_dump(mode="json")
        sealed: dict[str, str] = {}
        for path, url in list(_url_fields(data)):
            secrets = credentials_of(url)
            if not secrets:
                continue
            self.remember(secrets)
            sealed[path] = self._fernet.encrypt(url.encode("utf-8")).decode("ascii")
            _set_field(data, path, redact_url(url))
        if sealed:
            data["sealed"] = sealed
        return data

    def open(self, stored: Mapping[str, Any], *, name: str = "") -> dict[str, Any]:
        """The definition's JSON form with its credentials decrypted (see :meth:`seal`).
        Raises :class:`DefinitionError` when they cannot be decrypted with these keys."""
        sealed: Mapping[str, str] = stored.get("sealed") or {}
        data = {
            k: (list(v) if isinstance(v, list) else v) for k, v in stored.items() if k != "sealed"
        }
        for path, token in sealed.items():
            try:
                url = self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
            except (InvalidToken, ValueError):
                raise DefinitionError(
                    f"listener {name or data.get('name')!r}: its credentials cannot be "
                    "decrypted with this server's secret key (did MODELBUS_SECRET_KEY or "
                    "DATA_DIR/secret.key change?); apply its definition again"
                ) from None
            self.remember(credentials_of(url))
            _set_field(data, path, url)
        return data

    def remember(self, secrets: Iterable[str]) -> None:
        """Mask these values in :meth:`redact` from now on."""
        self._known.update(s for s in secrets if s and s != MASK)

    def remember_definition(self, definition: Mapping[str, Any] | ListenerDefinition) -> None:
        """Remember every credential of a definition (or of its raw JSON form)."""
        data = (
            definition.model_dump(mode="json")
            if isinstance(definition, ListenerDefinition)
            else definition
        )
        for _, url in _url_fields(data):
            self.remember(credentials_of(url))

    def redact(self, text: str) -> str:
        """``text`` with credentials masked by shape and by value (see :func:`redact_text`)."""
        return redact_text(text, self._known)


def _key_file(path: Path) -> str:
    """The key file's content, creating it (mode 0600) when missing. The new file is written
    aside and linked into place, so two processes starting at once agree on one key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(SecretBox.new_key() + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink(missing_ok=True)
    return path.read_text(encoding="ascii")


class RedactingFilter(logging.Filter):
    """A logging filter masking credentials in messages and tracebacks (put it on handlers:
    a handler's filters see every record it writes, whichever logger made it)."""

    def __init__(self, box: SecretBox) -> None:
        super().__init__("modelbus.store.secrets")
        self._box = box

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        redacted = self._box.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._box.redact(record.exc_text)
        return True
