"""Connector URLs: their options, parsed one way for every connector, and their secrecy.

Every connector's URL takes its options in the query string. These helpers refuse what a
definition must not silently ignore (an unknown or repeated option, a value of the wrong
kind or range) with a :class:`~modelbus.errors.DefinitionError` that names the option, the
allowed values and the URL, redacted.

**Every connector URL is a secret**, whole: a credential hides in more shapes than anyone
can list (a webhook's path ``/services/T0/B0/SECRET``, ``?sig=``, ``?code=``, a token as the
user info of ``https://TOKEN@host`` or ``redis://TOKEN@host``...). So a URL is shown by its
*shape* only (:func:`redact_url`, the one function that does, for connectors, listeners,
logs and the API alike)::

    https://hooks.slack.com/services/T0/B0/SECRET  ->  https://hooks.slack.com/***/***/***/***
    amqp://app:pw@rabbit:5672/?queue=jobs          ->  amqp://***@rabbit:5672/?queue=***

the scheme, the host(s) and port kept; the user info, every path segment, every query value
and the fragment ``***``. :func:`redact_text` shows every URL in a text that way (and masks
``password=...``-like options and known credentials by value); :func:`restore_url` puts a
stored URL's values back where an edited URL still shows ``***``; :func:`credentials_of`
lists the pieces of a URL worth masking by value where they appear outside it.
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
    "has_placeholder",
    "mask_credentials",
    "parse_bool",
    "parse_float",
    "parse_int",
    "parse_query",
    "redact_text",
    "redact_url",
    "restore_url",
]

MASK = "***"
# Options whose value is masked by value too, and by shape in any text (``token=...``).
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
        "key",
        "code",
        "sig",
        "signature",
        "auth",
        "sas",
        "client_secret",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    }
)
# Schemes whose user info without a password is always a token, never a user name.
TOKEN_USERINFO_SCHEMES = frozenset({"nats", "tls"})
# Schemes whose path segments and query values may each be a token (webhooks): masked by
# value as well as by shape once seen, when they look like one (see _token_like).
WEBHOOK_SCHEMES = frozenset({"http", "https", "webhook"})
# Credentials shorter than this are masked by shape only (masking "a" everywhere by value
# would garble every message).
MIN_KNOWN_LENGTH = 4

_OPTIONS = "|".join(re.escape(o) for o in sorted(SECRET_OPTIONS, key=len, reverse=True))
_URL = re.compile(r"(?i)(?<![\w+.-])[a-z][a-z0-9+.-]*://[^\s'\"<>`|]*")
_URL_TRAILER = ".,;:!?)]}"
_OPTION_VALUE = re.compile(rf"(?i)(?<![\w-])({_OPTIONS})=([^&\s'\"#)]+)")


# --- shapes ---------------------------------------------------------------------------------


def _split_userinfo(netloc: str) -> tuple[str | None, str]:
    userinfo, at, host = netloc.rpartition("@")
    return (userinfo, host) if at else (None, netloc)


def _url_parts(url: str) -> tuple[str, str, str, str, str | None]:
    """(scheme + '://', netloc, path, query without '?', fragment without '#' or None),
    without re-encoding anything; ('', '', url, '', None) for a text with no '://'."""
    scheme, sep, after = url.partition("://")
    if not sep:
        return "", "", url, "", None
    end = len(after)
    for mark in "/?#":
        found = after.find(mark)
        if found != -1:
            end = min(end, found)
    netloc, tail = after[:end], after[end:]
    tail, hashed, fragment = tail.partition("#")
    path, _, query = tail.partition("?")
    return scheme + "://", netloc, path, query, (fragment if hashed else None)


def _masked_piece(piece: str) -> str:
    name, eq, _ = piece.partition("=")
    return f"{name}={MASK}" if eq else MASK


def redact_url(url: str) -> str:
    """``url`` by its shape: the scheme, host(s) and port as written; the user info, every
    path segment, every query value and the fragment replaced by ``***``. A text that is no
    ``scheme://`` URL is ``***`` whole (``scheme:***`` when it has a scheme)."""
    head, netloc, path, query, fragment = _url_parts(url)
    if not head:
        scheme, colon, _ = url.partition(":")
        return f"{scheme}:{MASK}" if colon and scheme.isalnum() else MASK
    userinfo, host = _split_userinfo(netloc)
    shown = head + (f"{MASK}@" if userinfo is not None else "") + host
    shown += "/".join(MASK if segment else "" for segment in path.split("/"))
    if query:
        shown += "?" + "&".join(_masked_piece(p) if p else "" for p in query.split("&"))
    if fragment:
        shown += f"#{MASK}"
    return shown


def mask_credentials(url: str) -> str:
    """``url`` with only its credentials ``***``: the user info's password (or the whole user
    info when it has none: a token) and the values of secret-named options; everything else
    as written. Not for showing a URL (that is :func:`redact_url`): for telling an operator
    what value to write somewhere, the password left for them to fill in (the KEDA plan)."""
    head, netloc, path, query, fragment = _url_parts(url)
    userinfo, host = _split_userinfo(netloc)
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    pieces = [
        f"{p.partition('=')[0]}={MASK}"
        if unquote(p.partition("=")[0]).lower() in SECRET_OPTIONS and "=" in p
        else p
        for p in (query.split("&") if query else [])
    ]
    shown = head + netloc + path + ("?" + "&".join(pieces) if query else "")
    return shown + (f"#{fragment}" if fragment is not None else "")


def credentials_of(url: str) -> list[str]:
    """The pieces of ``url`` to mask by value wherever they appear (as written and
    URL-decoded): the user info's password, or the user info when it is a token (it has no
    password, and looks like a token or the scheme takes one there), the values of
    secret-named options, and, for a webhook URL, every path segment and query value that
    looks like a token. (Everything else of a URL is masked where the URL is: by shape.)"""
    found: list[str] = []
    head, netloc, path, query, _ = _url_parts(url)
    userinfo, _ = _split_userinfo(netloc)
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if colon:
            found.append(password)
        elif _token_like(user) or head.removesuffix("://").lower() in TOKEN_USERINFO_SCHEMES:
            found.append(user)  # a token; a plain user name ("postgres") is no secret alone
    webhook = head.removesuffix("://").lower() in WEBHOOK_SCHEMES
    for piece in query.split("&") if query else ():
        name, _, value = piece.partition("=")
        if unquote(name).lower() in SECRET_OPTIONS or (webhook and _token_like(value)):
            found.append(value)
    if webhook:
        found.extend(s for s in path.split("/") if _token_like(s))
    return [v for value in found for v in {value, unquote(value)} if value and value != MASK]


def _token_like(piece: str) -> bool:
    """Whether a webhook URL's path segment or query value looks like a token rather than a
    word (``services``, ``hooks``): long, or mixing letters and digits."""
    mixed = any(c.isdigit() for c in piece) and any(c.isalpha() for c in piece)
    return len(piece) >= 20 or (len(piece) >= 8 and mixed)


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every URL shown by its shape (:func:`redact_url`), secret-named options
    (``token=...``) masked, and the ``known`` credentials masked by value."""
    text = _URL.sub(_redact_match, text)
    text = _OPTION_VALUE.sub(rf"\1={MASK}", text)
    for secret in sorted(known, key=len, reverse=True):
        if len(secret) >= MIN_KNOWN_LENGTH:
            text = text.replace(secret, MASK)
    return text


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = url.rstrip(_URL_TRAILER)
    return redact_url(kept) + url[len(kept) :]


def has_placeholder(url: str) -> bool:
    """Whether ``url`` shows ``***`` in place of a value, as :func:`redact_url` puts it: as
    its user info, a path segment, a query value or piece, or its fragment."""
    head, netloc, path, query, fragment = _url_parts(url)
    if not head:
        return False
    userinfo, _ = _split_userinfo(netloc)
    pieces = query.split("&") if query else []
    return (
        userinfo == MASK
        or MASK in path.split("/")
        or any(p == MASK or p.partition("=")[2] == MASK for p in pieces)
        or fragment == MASK
    )


def restore_url(given: str, stored: str) -> str:
    """``given`` with each ``***`` that :func:`redact_url` put in place of a value of
    ``stored`` (its user info, a path segment by position, a query value by name, the
    fragment) replaced by that value, so that a redacted URL can be edited and sent back.
    ``given`` is returned as it is when it shows no ``***`` (:func:`has_placeholder`).

    Raises :class:`DefinitionError` when a ``***`` cannot be filled: the URL's scheme or
    host differs from the stored one (a stored secret never goes to another host), or the
    stored URL has no value in that place."""
    if not has_placeholder(given):
        return given
    head, netloc, path, query, fragment = _url_parts(given)
    s_head, s_netloc, s_path, s_query, s_fragment = _url_parts(stored)
    userinfo, host = _split_userinfo(netloc)
    s_userinfo, s_host = _split_userinfo(s_netloc)
    if head.lower() != s_head.lower() or host.lower() != s_host.lower():
        raise DefinitionError(
            f"{redact_url(given)!r} shows *** but its scheme or host is not the stored URL's "
            f"({redact_url(stored)!r}): a stored secret is only kept for the same place; "
            "type the whole URL"
        )

    def refuse(where: str) -> DefinitionError:
        return DefinitionError(
            f"{redact_url(given)!r} shows *** in its {where}, and the stored URL has no value "
            "to keep there: type the whole URL"
        )

    if userinfo == MASK:
        if s_userinfo is None:
            raise refuse("user info")
        userinfo = s_userinfo
    stored_segments = s_path.split("/")
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if segment == MASK:
            if i >= len(stored_segments) or not stored_segments[i]:
                raise refuse("path")
            segments[i] = stored_segments[i]
    stored_pieces = s_query.split("&") if s_query else []
    stored_values: dict[str, str] = {}
    for piece in stored_pieces:
        name, eq, value = piece.partition("=")
        if eq:
            stored_values.setdefault(name, value)
    pieces = query.split("&") if query else []
    for i, piece in enumerate(pieces):
        name, eq, value = piece.partition("=")
        if eq and value == MASK:
            if name not in stored_values:
                raise refuse(f"option {name!r}")
            pieces[i] = f"{name}={stored_values[name]}"
        elif not eq and piece == MASK:
            if i >= len(stored_pieces) or "=" in stored_pieces[i]:
                raise refuse("query")
            pieces[i] = stored_pieces[i]
    if fragment == MASK:
        if s_fragment is None:
            raise refuse("fragment")
        fragment = s_fragment
    restored = head + (f"{userinfo}@" if userinfo is not None else "") + host + "/".join(segments)
    if query:
        restored += "?" + "&".join(pieces)
    if fragment is not None:
        restored += "#" + fragment
    return restored


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
