"""Initial schema: every table of modelbus/schema.py (registry, keys, jobs, listeners).

Revision ID: 0001
Revises:
Create Date: 2026-11-24 13:49:52.330168
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_table(
        "builds",
        sa.Column("hash", sa.String(length=80), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("env_hash", sa.String(length=80), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_builds")),
    )
    op.create_index(op.f("ix_builds_owner_name"), "builds", ["owner", "name"], unique=False)
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("listener", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=512), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("error_type", sa.String(length=200), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("stacktrace", sa.Text(), nullable=False),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("redriven_at", sa.Float(), nullable=True),
        sa.Column("redriven_to", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_listener_created_at"),
        "dead_letters",
        ["listener", "created_at"],
        unique=False,
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.String(length=80), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input_data", sa.LargeBinary(), nullable=False),
        sa.Column("input_content_type", sa.String(length=16), nullable=False),
        sa.Column("input_mime", sa.String(length=200), nullable=True),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("output_data", sa.LargeBinary(), nullable=True),
        sa.Column("output_content_type", sa.String(length=16), nullable=True),
        sa.Column("output_mime", sa.String(length=200), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"], unique=False)
    op.create_table(
        "listeners",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_listeners")),
    )
    op.create_table(
        "models",
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "name", name=op.f("pk_models")),
    )
    op.create_table(
        "runs",
        sa.Column("listener", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("output_id", sa.String(length=200), nullable=True),
        sa.Column("result_location", sa.Text(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("first_received_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("listener", "message_id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_finished_at"), "runs", ["finished_at"], unique=False)
    op.create_index(op.f("ix_runs_message_id"), "runs", ["message_id"], unique=False)
    op.create_table(
        "versions",
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("minor", sa.Integer(), nullable=False),
        sa.Column("patch", sa.Integer(), nullable=False),
        sa.Column("build_hash", sa.String(length=80), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_hash"], ["builds.hash"], name=op.f("fk_versions_build_hash_builds")
        ),
        sa.PrimaryKeyConstraint("owner", "name", "version", name=op.f("pk_versions")),
    )


def downgrade() -> None:
    op.drop_table("versions")
    op.drop_index(op.f("ix_runs_message_id"), table_name="runs")
    op.drop_index(op.f("ix_runs_finished_at"), table_name="runs")
    op.drop_table("runs")
    op.drop_table("models")
    op.drop_table("listeners")
    op.drop_index(op.f("ix_jobs_status"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_dead_letters_listener_created_at"), table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index(op.f("ix_builds_owner_name"), table_name="builds")
    op.drop_table("builds")
    op.drop_table("api_keys")
