"""Connector URLs: their options, parsed one way for every connector, and their credentials.

Every connector's URL takes its options in the query string. These helpers refuse what a
definition must not silently ignore (an unknown or repeated option, a value of the wrong
kind or range) with a :class:`~modelbus.errors.DefinitionError` that names the option, the
allowed values and the URL, its credentials masked.

A credential is whatever a connector URL carries that opens a door:

* the password of the URL's user info (``amqp://app:PASSWORD@host/``), or the whole user
  info where it is a token (``nats://TOKEN@host``, :data:`TOKEN_USERINFO_SCHEMES`);
* the value of a query option named like a secret (:data:`SECRET_OPTIONS`: ``password``,
  ``token``, ``sasl_password``, ``secret`` — a webhook's HMAC secret —, ...).

:func:`redact_url` shows a URL with those replaced by ``***`` (the one function that does,
for connectors, listeners, logs and the API alike); :func:`credentials_of` lists them, and
:func:`redact_text` masks them in any text by their shape (and known ones by value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from modelbus.errors import DefinitionError

__all__ = [
    "MASK",
    "SECRET_OPTIONS",
    "credentials_of",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_query",
    "redact_text",
    "redact_url",
]

MASK = "***"
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


# --- credentials ----------------------------------------------------------------------------


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


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with URL passwords, secret options and the ``known`` credentials masked."""
    text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    text = _URL_TOKEN.sub(rf"\1{MASK}@", text)
    text = _OPTION_VALUE.sub(rf"\1={MASK}", text)
    for secret in sorted(known, key=len, reverse=True):
        if len(secret) >= MIN_KNOWN_LENGTH:
            text = text.replace(secret, MASK)
    return text


# --- options --------------------------------------------------------------------------------


def parse_query(url: str, known: Iterable[str]) -> dict[str, str]:
    """The query parameters of ``url``; DefinitionError for an unknown or repeated one."""
    allowed = frozenset(known)
    query: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in allowed:
            choices = ", ".join(sorted(allowed))
            raise DefinitionError(
                f"unknown option {name!r} in {redact_url(url)!r}; known options: {choices}"
            )
        if name in query:
            raise DefinitionError(f"option {name!r} is given twice in {redact_url(url)!r}")
        query[name] = value
    return query


def parse_bool(query: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    """``true``/``false`` (also 1/0, yes/no) from the query; DefinitionError otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    value = raw.lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise DefinitionError(f"option {name}={raw!r} must be true or false")


def parse_int(
    query: Mapping[str, str],
    name: str,
    *,
    low: int,
    high: int | None = None,
    default: int | None = None,
) -> int | None:
    """A whole number in ``[low, high]`` from the query, or ``default`` if absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DefinitionError(f"option {name}={raw!r} must be a whole number") from None
    if high is None and value < low:
        raise DefinitionError(f"option {name}={value} must be at least {low}")
    if high is not None and not low <= value <= high:
        raise DefinitionError(f"option {name}={value} must be between {low} and {high}")
    return value


def parse_float(
    query: Mapping[str, str], name: str, default: float, *, low: float, high: float
) -> float:
    """A number in ``[low, high]`` from the query, or ``default`` if absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise DefinitionError(f"option {name}={raw!r} must be a number") from None
    if not low <= value <= high:
        raise DefinitionError(f"option {name}={raw} must be between {low:g} and {high:g}")
    return value
