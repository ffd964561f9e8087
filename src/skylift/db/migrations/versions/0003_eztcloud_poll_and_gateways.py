"""eztcloud poll and gateways

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 05:03:19.579131
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Server defaults fill the new NOT NULL columns of rows that already exist.
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("login_username", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("command_topic", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("gateway_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_devices_gateway_id"), ["gateway_id"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_devices_gateway_id_address"), ["gateway_id", "address"])
        batch_op.create_foreign_key(
            batch_op.f("fk_devices_gateway_id_devices"), "devices", ["gateway_id"], ["id"], ondelete="SET NULL"
        )

    with op.batch_alter_table("modules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version_property", sa.String(length=64), nullable=False, server_default=""))
    # Existing modules get the property names new ones get: `version` for the default, `{name}_version` otherwise.
    op.execute("UPDATE modules SET version_property = 'version' WHERE name = 'default'")
    op.execute("UPDATE modules SET version_property = lower(name) || '_version' WHERE name <> 'default'")

    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auto_upgrade_latest", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("auto_upgrade_latest")

    with op.batch_alter_table("modules", schema=None) as batch_op:
        batch_op.drop_column("version_property")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_devices_gateway_id_devices"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_devices_gateway_id_address"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_devices_gateway_id"))
        batch_op.drop_column("address")
        batch_op.drop_column("gateway_id")
        batch_op.drop_column("command_topic")
        batch_op.drop_column("login_username")
