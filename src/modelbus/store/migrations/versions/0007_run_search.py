"""Searchable runs and dead letters: ``object_key`` on ``runs`` and ``dead_letters`` (the
object an S3 or folder notification announced, BUCKET/KEY), indexed, and indexes on the
times the listings across every listener are ordered by.

Placeholder number: the lead renumbers it on merge if another 0007 lands first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 20:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("runs", "dead_letters"):
        op.add_column(table, sa.Column("object_key", sa.String(length=1024), nullable=True))
        op.create_index(op.f(f"ix_{table}_object_key"), table, ["object_key"], unique=False)
    op.create_index(op.f("ix_runs_updated_at"), "runs", ["updated_at"], unique=False)
    op.create_index(
        op.f("ix_dead_letters_created_at"), "dead_letters", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dead_letters_created_at"), table_name="dead_letters")
    op.drop_index(op.f("ix_runs_updated_at"), table_name="runs")
    for table in ("dead_letters", "runs"):
        op.drop_index(op.f(f"ix_{table}_object_key"), table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("object_key")
