"""Listener URLs are secrets: encrypted in the store, shown by their shape.

A credential hides in more URL shapes than anyone can list (a webhook path, ``?sig=``,
``https://TOKEN@host``...), so every source, output and error-sink URL is treated as one,
whole. How a URL is shown without its secrets is the connectors' knowledge
(:func:`modelbus.connectors.redact_url`: ``scheme://host:port/***?name=***``); what to do
with them is decided here.

**At rest.** :meth:`Credentials.seal` turns a listener definition into what the
``listeners`` table stores: the definition with every URL redacted, plus a ``sealed`` map
from the field (``source``, ``outputs.0``, ``error_sink``) to that field's whole URL,
encrypted with the server's secret key (:class:`~modelbus.store.secrets.SecretBox`).
:meth:`Credentials.open` restores it. So the stored row shows which broker a listener
connects to, never what it connects with. (Migration ``0009_encrypt_listener_urls`` seals
the rows written before.)

**On the way out.** The API shows definitions through :func:`redact_definition` to every key
without ``listeners:manage`` (those with it see the URLs whole: they edit them); the console
always. A definition sent back with ``***`` in a URL keeps the stored values there
(:func:`restore_masked`). Every error message and every log line goes through
:meth:`Credentials.redact` (:class:`RedactingFilter` for logs), which shows every URL by its
shape, masks secret options, plus every credential the server has seen by its value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from modelbus.connectors import (
    MASK,
    credentials_of,
    has_placeholder,
    redact_text,
    redact_url,
    restore_url,
)
from modelbus.errors import DefinitionError, InvalidInput
from modelbus.listeners.definition import ListenerDefinition
from modelbus.store.secrets import SecretBox

__all__ = [
    "Credentials",
    "RedactingFilter",
    "credentials_of",
    "redact_definition",
    "redact_text",
    "redact_url",
    "restore_masked",
]


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
    """The definition as a reader sees it: every URL by its shape (:func:`redact_url`)."""
    data = definition.model_dump(mode="json")
    for path, url in list(_url_fields(data)):
        _set_field(data, path, redact_url(url))
    return ListenerDefinition.model_validate(data)


def restore_masked(
    definition: ListenerDefinition, stored: ListenerDefinition | None
) -> ListenerDefinition:
    """``definition`` with the ``***`` of each URL filled from the stored definition's
    (:func:`~modelbus.connectors.restore_url`): from the URL in the same field when it has
    the same scheme and host, else from the stored URL of the same shape. So a definition
    read redacted (from the API or the console) can be edited and applied back without
    retyping secrets. Raises :class:`DefinitionError` for a ``***`` that no stored URL can
    fill (a new listener, another host)."""
    old = dict(_url_fields(stored.model_dump(mode="json"))) if stored is not None else {}
    data = definition.model_dump(mode="json")
    changed = False
    for path, url in list(_url_fields(data)):
        if not has_placeholder(url):
            continue
        _set_field(data, path, restore_url(url, _stored_match(url, old.get(path), old)))
        changed = True
    return ListenerDefinition.model_validate(data) if changed else definition


def _stored_match(url: str, same_field: str | None, stored: Mapping[str, str]) -> str:
    """The stored URL whose values fill ``url``'s ``***``: the same field's when it is at
    the same place (scheme and host), else any of the same shape. Raises
    :class:`DefinitionError` when there is none."""
    shape = redact_url(url)
    if same_field is not None and _place(same_field) == _place(url):
        return same_field
    for candidate in stored.values():
        if redact_url(candidate) == shape:
            return candidate
    if same_field is not None:
        return same_field  # restore_url says why it does not fit
    raise DefinitionError(
        f"{shape!r} shows *** in place of a value, and no stored URL of this listener has "
        "that shape to take it from: type the whole URL"
    )


def _place(url: str) -> str:
    """A URL's scheme and host(s), lower-cased: where its secrets may be sent."""
    head, sep, rest = redact_url(url).lower().partition("://")
    host = rest.removeprefix(f"{MASK}@")  # the only @ a redacted URL can hold
    for mark in "/?#":
        host = host.split(mark, 1)[0]
    return head + sep + host


class Credentials:
    """Seals listener URLs for the store and masks them everywhere else.

    Thread-safe for reading; :meth:`remember` only ever adds."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._known: set[str] = set()

    def seal(self, definition: ListenerDefinition) -> dict[str, Any]:
        """The stored form of ``definition``: every URL redacted, and encrypted whole under
        ``sealed``."""
        data = definition.model_dump(mode="json")
        sealed: dict[str, str] = {}
        for path, url in list(_url_fields(data)):
            self.remember(credentials_of(url))
            sealed[path] = self._box.encrypt(url)
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
                url = self._box.decrypt(token)
            except InvalidInput:
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
        """``text`` with every URL by its shape, secret options and every credential seen
        masked (see :func:`redact_text`)."""
        return redact_text(text, self._known)


class RedactingFilter(logging.Filter):
    """A logging filter masking credentials in messages and tracebacks (put it on handlers:
    a handler's filters see every record it writes, whichever logger made it)."""

    def __init__(self, credentials: Credentials) -> None:
        super().__init__("modelbus.store.secrets")
        self._credentials = credentials

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        redacted = self._credentials.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._credentials.redact(record.exc_text)
        return True
