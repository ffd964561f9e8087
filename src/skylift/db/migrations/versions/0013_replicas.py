"""replicas: the node holding a device's connection, the node that acknowledged an inbox message, and
the nodes' heartbeats

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_nodes")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("disconnect_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f("ix_devices_node"), ["node"], unique=False)
    # Messages acknowledged before replicas existed belong to the single process, named "main" by default.
    with op.batch_alter_table("device_inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=64), nullable=False, server_default="main"))
        batch_op.create_index(batch_op.f("ix_device_inbox_node"), ["node"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_inbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_inbox_node"))
        batch_op.drop_column("node")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_node"))
        batch_op.drop_column("disconnect_requested")
        batch_op.drop_column("node")
    op.drop_table("nodes")
