"""Listener credentials: encrypted in the store, ``***`` everywhere they could be shown.

What a credential is, and how a URL is shown without one, is the connectors' knowledge
(:func:`modelbus.connectors.redact_url`); what to do with them is decided here.

**At rest.** :meth:`Credentials.seal` turns a listener definition into what the
``listeners`` table stores: the definition with every credential replaced by ``***``, plus
a ``sealed`` map from the field (``source``, ``outputs.0``, ``error_sink``) to that field's
whole URL, encrypted with the server's secret key
(:class:`~modelbus.store.secrets.SecretBox`).
:meth:`Credentials.open` restores it. So the stored row shows where a listener connects,
never how it authenticates.

**On the way out.** The API shows definitions through :func:`redact_definition`; every error
message and every log line goes through :meth:`Credentials.redact` (:class:`RedactingFilter`
for logs), which masks URL passwords and secret options by their shape, plus every
credential the server has seen by its value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from modelbus.connectors import MASK, credentials_of, redact_text, redact_url
from modelbus.errors import DefinitionError, InvalidInput
from modelbus.listeners.definition import ListenerDefinition
from modelbus.store.secrets import SecretBox

__all__ = [
    "Credentials",
    "RedactingFilter",
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


class Credentials:
    """Seals listener credentials for the store and masks them everywhere else.

    Thread-safe for reading; :meth:`remember` only ever adds."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._known: set[str] = set()

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
        """``text`` with credentials masked by shape and by value (see :func:`redact_text`)."""
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
