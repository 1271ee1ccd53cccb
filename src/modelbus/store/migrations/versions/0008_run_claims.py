"""Run claims: ``runs.claimed_by`` and ``runs.claim_expires_at``, the listener replica (on
any node) running a message now and until when, so that a redelivery of a message whose
run is still going is not run at once elsewhere (:meth:`RunStore.claim`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 20:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("claim_expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("claim_expires_at")
        batch.drop_column("claimed_by")
