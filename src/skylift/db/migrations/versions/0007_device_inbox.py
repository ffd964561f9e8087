"""device inbox: acknowledged device messages not applied yet

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 06:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("login_style", sa.String(length=16), nullable=False),
        sa.Column("auto_subscribe", sa.Boolean(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_inbox")),
    )


def downgrade() -> None:
    op.drop_table("device_inbox")
