"""Run totals: the ``run_totals`` table (what pruning forgot, per listener and status), so
that a listener's totals survive the pruning of its run records.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 17:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_totals",
        sa.Column("listener", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("listener", "status", name=op.f("pk_run_totals")),
    )


def downgrade() -> None:
    op.drop_table("run_totals")
