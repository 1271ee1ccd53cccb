"""Model and version details: ``models.details`` (what a management client said about a
model beyond its description: Algorithmia's details and settings) and ``versions.details``
(release notes, sample input and output), both JSON, stored as given.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 16:59:26.606533
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_column("details")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("details")
