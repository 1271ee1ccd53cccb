"""Connector URL options, parsed one way for every connector.

Every connector's URL takes its options in the query string. These helpers refuse what a
definition must not silently ignore (an unknown or repeated option, a value of the wrong
kind or range) with a :class:`~modelbus.errors.DefinitionError` that names the option, the
allowed values and the URL, its credentials masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from modelbus.errors import DefinitionError

__all__ = ["parse_bool", "parse_float", "parse_int", "parse_query", "redacted"]


def redacted(url: str) -> str:
    """``url`` with its password, token and secret options replaced by ``***``."""
    from modelbus.store.secrets import redact_url  # secrets needs definitions, which need us

    return redact_url(url)


def parse_query(url: str, known: Iterable[str]) -> dict[str, str]:
    """The query parameters of ``url``; DefinitionError for an unknown or repeated one."""
    allowed = frozenset(known)
    query: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in allowed:
            choices = ", ".join(sorted(allowed))
            raise DefinitionError(
                f"unknown option {name!r} in {redacted(url)!r}; known options: {choices}"
            )
        if name in query:
            raise DefinitionError(f"option {name!r} is given twice in {redacted(url)!r}")
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
