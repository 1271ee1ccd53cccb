"""Figure history: the ``figure_history`` table (what each process counted between two
samples, per listener and per model version, kept an hour) behind the console's charts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 20:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "figure_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("part", sa.String(length=100), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_figure_history")),
    )
    op.create_index(
        op.f("ix_figure_history_kind_name_at"), "figure_history", ["kind", "name", "at"]
    )
    op.create_index(op.f("ix_figure_history_at"), "figure_history", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_figure_history_at"), table_name="figure_history")
    op.drop_index(op.f("ix_figure_history_kind_name_at"), table_name="figure_history")
    op.drop_table("figure_history")
