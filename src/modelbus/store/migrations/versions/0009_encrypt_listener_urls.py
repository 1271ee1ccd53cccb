"""Encrypt listener URLs: every source, output and error-sink URL of a stored listener is
encrypted whole with the server's secret key (until now only those carrying a credential
of a known shape were), and shown in the row by its shape only.

The rows keep the form they had: the definition with each URL redacted, and ``sealed``
mapping the field (``source``, ``outputs.N``, ``error_sink``) to the encrypted URL; fields
sealed already are left as they are. The secret key comes from
:meth:`modelbus.store.database.Database.migrate` (``secrets=``); a store holding a URL in
clear refuses to migrate without it. Downgrading changes nothing: older servers read sealed
fields already.

The lead may renumber this placeholder revision on merge.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 20:40:00.000000
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_MASK = "***"
_listeners = sa.table("listeners", sa.column("name", sa.String), sa.column("definition", sa.JSON))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_listeners.c.name, _listeners.c.definition)).all()
    pending = [(name, definition) for name, definition in rows if _clear(definition)]
    if not pending:
        return
    config = op.get_context().config
    box = config.attributes.get("secret_box") if config is not None else None
    if box is None:
        raise RuntimeError(
            "migration 0009 encrypts the listener URLs stored in clear and needs the "
            "server's secret key: run it through `modelbus serve` (Database.migrate(secrets=...))"
        )
    for name, definition in pending:
        conn.execute(
            sa.update(_listeners)
            .where(_listeners.c.name == name)
            .values(definition=_sealed(definition, box))
        )


def downgrade() -> None:
    pass  # sealed fields are what every earlier revision's servers read already


def _fields(definition: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if isinstance(definition.get("source"), str):
        yield "source", definition["source"]
    outputs = definition.get("outputs")
    for i, url in enumerate(outputs if isinstance(outputs, list) else ()):
        if isinstance(url, str):
            yield f"outputs.{i}", url
    if isinstance(definition.get("error_sink"), str):
        yield "error_sink", definition["error_sink"]


def _clear(definition: Any) -> list[tuple[str, str]]:
    """The (field, URL) pairs of a stored definition not encrypted yet."""
    if not isinstance(definition, dict):
        return []
    sealed = definition.get("sealed") or {}
    return [(path, url) for path, url in _fields(definition) if path not in sealed]


def _sealed(definition: dict[str, Any], box: Any) -> dict[str, Any]:
    data = {k: (list(v) if isinstance(v, list) else v) for k, v in definition.items()}
    sealed = dict(data.get("sealed") or {})
    for path, url in _clear(definition):
        sealed[path] = box.encrypt(url)
        name, _, index = path.partition(".")
        if index:
            data[name][int(index)] = _shape(url)
        else:
            data[name] = _shape(url)
    data["sealed"] = sealed
    return data


def _shape(url: str) -> str:
    """``scheme://host:port/***?name=***``: what the row shows of a URL (the rule of
    ``modelbus.connectors.redact_url`` as of this revision, frozen here)."""
    scheme, sep, after = url.partition("://")
    if not sep:
        return _MASK
    end = min([i for i in (after.find(m) for m in "/?#") if i != -1] or [len(after)])
    host, tail = after[:end].rpartition("@")[2], after[end:]
    userinfo = f"{_MASK}@" if "@" in after[:end] else ""
    tail, hashed, fragment = tail.partition("#")
    path, _, query = tail.partition("?")
    shown = f"{scheme}://{userinfo}{host}" + "/".join(_MASK if s else "" for s in path.split("/"))
    if query:
        pieces = (p.partition("=") for p in query.split("&"))
        shown += "?" + "&".join(
            f"{n}={_MASK}" if eq else (_MASK if n else "") for n, eq, _ in pieces
        )
    if hashed and fragment:
        shown += f"#{_MASK}"
    return shown
