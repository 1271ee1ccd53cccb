"""API keys on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import select

from modelbus.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from modelbus.store import schema
from modelbus.store.database import Database
from modelbus.store.keys import ADMIN, KeyInfo, KeyStore

KEY_FORMAT = re.compile(r"^mb_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")


async def test_create_and_verify(db: Database) -> None:
    keys = KeyStore(db)
    plaintext, info = await keys.create("ci", ["call:acme/ocr", "models:manage"])
    assert KEY_FORMAT.match(plaintext) and plaintext.startswith(f"mb_{info.id}_")
    assert info.scopes == ("call:acme/ocr", "models:manage") and info.revoked_at is None
    verified = await keys.verify(plaintext)
    assert (verified.id, verified.name, verified.scopes) == (info.id, "ci", info.scopes)
    assert verified.last_used_at is not None
    assert [k.id for k in await keys.list()] == [info.id]


async def test_only_a_hash_of_the_secret_is_stored(db: Database) -> None:
    plaintext, _ = await KeyStore(db).create("x", ["admin"])
    secret = plaintext.split("_", 2)[2]
    async with db.read() as conn:
        row = (await conn.execute(select(schema.api_keys))).one()
    assert secret not in repr(tuple(row)) and len(row.secret_hash) == 64


async def test_bad_keys_are_unauthenticated(db: Database) -> None:
    keys = KeyStore(db)
    plaintext, _ = await keys.create("x", ["call:*"])
    wrong_secret = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
    unknown_id = "mb_" + "0" * 16 + plaintext[len("mb_") + 16 :]
    for bad in [
        wrong_secret,
        unknown_id,
        "",
        "mb_",
        "Bearer " + plaintext,
        "mb_xyz_secret",
        plaintext + "!",
    ]:
        with pytest.raises(Unauthenticated):
            await keys.verify(bad)


async def test_revocation_takes_effect_at_once(db: Database) -> None:
    keys = KeyStore(db)
    plaintext, info = await keys.create("temp", ["call:*"])
    await keys.verify(plaintext)
    revoked = await keys.revoke(info.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        await keys.verify(plaintext)
    assert (await keys.revoke(info.id)).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(NotFound):
        await keys.revoke("0" * 16)
    assert [k.revoked_at for k in await keys.list()] == [revoked.revoked_at]


async def test_scopes_are_validated(db: Database) -> None:
    keys = KeyStore(db)
    for bad in (["call:"], ["call:acme"], ["models:delete"], ["root"], []):
        with pytest.raises(InvalidInput, match="scope"):
            await keys.create("bad", bad)
    _, info = await keys.create("dup", ["call:*", "call:*", "admin"])
    assert info.scopes == ("call:*", "admin")


def key(*scopes: str) -> KeyInfo:
    return KeyInfo(
        id="k", name="n", scopes=scopes, created_at=0.0, last_used_at=None, revoked_at=None
    )


def test_scope_rules() -> None:
    admin = key(ADMIN)
    assert all(admin.allows(s) for s in ("call:a/b", "models:manage", "listeners:manage", "admin"))
    caller = key("call:*")
    assert caller.can_call("a", "b") and caller.can_call("x", "y")
    assert not caller.allows("models:manage") and not caller.allows("admin")
    one = key("call:acme/ocr", "listeners:manage")
    assert one.can_call("acme", "ocr") and not one.can_call("acme", "ocr2")
    assert one.allows("listeners:manage") and not one.allows("models:manage")
    with pytest.raises(Forbidden, match="lacks scope 'models:manage'"):
        one.require("models:manage")
    one.require("call:acme/ocr")


async def test_bootstrap_admin_only_on_a_store_without_keys(db: Database) -> None:
    keys = KeyStore(db)
    plaintext = await keys.bootstrap_admin()
    assert plaintext is not None
    assert (await keys.verify(plaintext)).scopes == (ADMIN,)
    assert await keys.bootstrap_admin() is None
    (info,) = await keys.list()
    await keys.create("own admin", [ADMIN])  # the last admin key cannot be revoked
    await keys.revoke(info.id)
    assert await keys.bootstrap_admin() is None  # revoked keys still count: not a fresh store


async def test_the_last_admin_key_cannot_be_revoked(db: Database) -> None:
    """With no admin key left, no key could be made or revoked again, and a store with
    keys makes no bootstrap key: revoking the last one (one's own, say) is refused."""
    keys = KeyStore(db)
    first = await keys.bootstrap_admin()
    assert first is not None
    (boot,) = await keys.list()
    _, reader = await keys.create("reader", ["call:*"])
    with pytest.raises(Conflict, match="last admin key"):
        await keys.revoke(boot.id)
    assert (await keys.verify(first)).revoked_at is None  # nothing changed
    _, other = await keys.create("second admin", [ADMIN])
    await keys.revoke(boot.id)  # another admin key is left
    await keys.revoke(reader.id)  # keys without admin go as before
    with pytest.raises(Conflict, match="last admin key"):
        await keys.revoke(other.id)


async def test_bootstrap_admin_after_other_keys_does_nothing(db: Database) -> None:
    keys = KeyStore(db)
    await keys.create("first", ["call:*"])
    assert await keys.bootstrap_admin() is None


async def test_concurrent_first_starts_create_one_admin_key(
    database_url: str, db: Database
) -> None:
    nodes = [await Database.open(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(KeyStore(node).bootstrap_admin() for node in nodes))
        assert sum(r is not None for r in results) == 1
        assert len(await KeyStore(db).list()) == 1
    finally:
        for node in nodes:
            await node.close()
