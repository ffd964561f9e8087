"""ids in 64 bits on PostgreSQL, as the API accepts them (SQLite's INTEGER holds 64 bits already)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 01:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Each table's own id first, then the columns that hold another row's id.
COLUMNS = {
    "products": ["id"],
    "modules": ["id", "product_id"],
    "devices": ["id", "product_id", "gateway_id"],
    "device_versions": ["id", "device_id"],
    "device_inbox": ["id", "device_id"],
    "packages": ["id", "product_id"],
    "package_files": ["id", "package_id"],
    "campaigns": ["id", "product_id", "package_id"],
    "campaign_devices": ["id", "campaign_id", "device_id"],
    "notice_outbox": ["id", "attempt_id", "device_id"],
    "audit_events": ["id", "target_id"],
    "users": ["id"],
    "user_sessions": ["id", "user_id"],
    "api_tokens": ["id", "user_id"],
}


def _retype(type_name: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} TYPE {type_name}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
        # The sequence that numbers the rows stops at its type's largest value, too.
        op.execute(
            f"DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS {type_name}', pg_get_serial_sequence('{table}', 'id'));"
            " END $$"
        )


def upgrade() -> None:
    _retype("BIGINT")


def downgrade() -> None:
    _retype("INTEGER")
