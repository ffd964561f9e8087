"""decommission devices and delete packages: deleted_at, names unique among what is in service

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

IN_SERVICE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_devices_product_id_name"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_devices_gateway_id_address"), type_="unique")
        for name, columns in (
            ("uq_devices_product_id_name_in_service", ["product_id", "name"]),
            ("uq_devices_gateway_id_address_in_service", ["gateway_id", "address"]),
        ):
            batch_op.create_index(name, columns, unique=True, sqlite_where=IN_SERVICE, postgresql_where=IN_SERVICE)
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column(
            "source_version", existing_type=sa.String(length=64), type_=sa.String(length=255), existing_nullable=False
        )
        batch_op.drop_constraint(
            batch_op.f("uq_packages_product_id_module_version_type_source_version"), type_="unique"
        )
        batch_op.create_index(
            "uq_packages_version_in_service",
            ["product_id", "module", "version", "type", "source_version"],
            unique=True,
            sqlite_where=IN_SERVICE,
            postgresql_where=IN_SERVICE,
        )


def downgrade() -> None:
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.drop_index("uq_packages_version_in_service")
        batch_op.create_unique_constraint(
            batch_op.f("uq_packages_product_id_module_version_type_source_version"),
            ["product_id", "module", "version", "type", "source_version"],
        )
        batch_op.alter_column(
            "source_version", existing_type=sa.String(length=255), type_=sa.String(length=64), existing_nullable=False
        )
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("uq_devices_gateway_id_address_in_service")
        batch_op.drop_index("uq_devices_product_id_name_in_service")
        batch_op.create_unique_constraint(batch_op.f("uq_devices_gateway_id_address"), ["gateway_id", "address"])
        batch_op.create_unique_constraint(batch_op.f("uq_devices_product_id_name"), ["product_id", "name"])
        batch_op.drop_column("deleted_at")
