"""notice outbox and device listening

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 06:30:00.000000
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
        "notice_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["campaign_devices.id"],
            name=op.f("fk_notice_outbox_attempt_id_campaign_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_notice_outbox_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_outbox")),
    )
    with op.batch_alter_table("notice_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_outbox_attempt_id"), ["attempt_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_outbox_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notice_outbox_sent_at"), ["sent_at"], unique=False)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("listening", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("relaying", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("relaying")
        batch_op.drop_column("listening")
    with op.batch_alter_table("notice_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_outbox_sent_at"))
        batch_op.drop_index(batch_op.f("ix_notice_outbox_device_id"))
        batch_op.drop_index(batch_op.f("ix_notice_outbox_attempt_id"))
    op.drop_table("notice_outbox")
