"""devices: a partial index of the connections to close, by node (each replica looks every second)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 11:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NAME = "ix_devices_node_disconnect_requested"


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(
            NAME,
            ["node"],
            sqlite_where=sa.text("disconnect_requested = 1"),
            postgresql_where=sa.text("disconnect_requested"),
        )


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(NAME)
