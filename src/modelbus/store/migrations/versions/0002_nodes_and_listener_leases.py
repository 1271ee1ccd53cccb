"""Nodes and listener leases: the ``nodes`` table (every serve process on the store, with
its heartbeat) and ``listener_leases`` (which node runs a listener whose source cannot be
shared).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 13:49:36.240725
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listener_leases",
        sa.Column("listener", sa.String(length=100), nullable=False),
        sa.Column("owner", sa.String(length=40), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("listener", name=op.f("pk_listener_leases")),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("parent", sa.String(length=40), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.Float(), nullable=True),
        sa.Column("listeners", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    op.create_index(op.f("ix_nodes_heartbeat_at"), "nodes", ["heartbeat_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_nodes_heartbeat_at"), table_name="nodes")
    op.drop_table("nodes")
    op.drop_table("listener_leases")
