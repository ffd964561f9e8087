"""rollout engine and audit log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 04:31:31.641439
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Server defaults fill the new NOT NULL columns of rows that already exist.
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_target_type"), ["target_type"], unique=False)

    with op.batch_alter_table("campaign_devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rank", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("group_index", sa.Integer(), nullable=False, server_default="0"))

    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("target", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("offline", sa.String(length=24), nullable=False, server_default="fail"))
        batch_op.add_column(sa.Column("start_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cron", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("end_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("window", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("groups", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("current_group", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("success_threshold", sa.Float(), nullable=False, server_default="100"))
        batch_op.add_column(sa.Column("approval_required", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("error_threshold", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("min_finished", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("on_error", sa.String(length=8), nullable=False, server_default="pause"))
        batch_op.add_column(sa.Column("max_per_minute", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("timeout_minutes", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("retry_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("retry_interval_minutes", sa.Float(), nullable=False, server_default="5"))
        batch_op.add_column(sa.Column("acknowledged_failed", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("acknowledged_finished", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("versions_before", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.create_index(batch_op.f("ix_campaigns_state"), ["state"], unique=False)

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("tags")

    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_state"))
        batch_op.drop_column("versions_before")
        batch_op.drop_column("acknowledged_finished")
        batch_op.drop_column("acknowledged_failed")
        batch_op.drop_column("retry_interval_minutes")
        batch_op.drop_column("retry_count")
        batch_op.drop_column("timeout_minutes")
        batch_op.drop_column("max_per_minute")
        batch_op.drop_column("on_error")
        batch_op.drop_column("min_finished")
        batch_op.drop_column("error_threshold")
        batch_op.drop_column("approval_required")
        batch_op.drop_column("success_threshold")
        batch_op.drop_column("current_group")
        batch_op.drop_column("groups")
        batch_op.drop_column("next_run_at")
        batch_op.drop_column("window")
        batch_op.drop_column("end_at")
        batch_op.drop_column("cron")
        batch_op.drop_column("start_at")
        batch_op.drop_column("offline")
        batch_op.drop_column("target")
        batch_op.drop_column("started_at")
        batch_op.drop_column("paused_reason")

    with op.batch_alter_table("campaign_devices", schema=None) as batch_op:
        batch_op.drop_column("group_index")
        batch_op.drop_column("rank")

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_target_type"))
        batch_op.drop_index(batch_op.f("ix_audit_events_at"))

    op.drop_table("audit_events")
