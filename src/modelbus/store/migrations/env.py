"""Alembic environment: migrates the connection handed over by :meth:`Database.migrate`.

``config.attributes["connection"]`` is a synchronous SQLAlchemy connection already inside a
transaction (and holding the migration lock), so every revision runs in that one transaction.
"""

from __future__ import annotations

from alembic import context

from modelbus.store.database import VERSION_TABLE
from modelbus.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("modelbus migrations run through modelbus.store.database.Database.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
