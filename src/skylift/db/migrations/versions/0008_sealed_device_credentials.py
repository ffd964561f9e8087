"""sealed device credentials: tokens and secrets encrypted at rest, tokens found by keyed digest

Access tokens, device secrets and the two columns that may hold a token device's username (its
token) are sealed with the process's credentials keyring; the device inbox keeps a mark in place of a
token in its topics. On SQLite, freed pages are overwritten, so the clear values do not linger in
the file.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from skylift.kit import sealing

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TOKEN_MARK = "{access_token}"
SEALED = ("access_token", "device_secret", "login_username", "command_topic")


def _secure_delete() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")


def upgrade() -> None:
    _secure_delete()
    keyring = sealing.keyring()
    with op.batch_alter_table("devices") as batch_op:
        for name in SEALED:
            batch_op.add_column(sa.Column(f"{name}_sealed", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("token_digest", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    devices = sa.table("devices", sa.column("id"), *(sa.column(n) for n in SEALED), sa.column("token_digest"))
    devices_sealed = sa.table(
        "devices", sa.column("id"), sa.column("token_digest"), *(sa.column(f"{n}_sealed") for n in SEALED)
    )
    tokens: dict[int, str] = {}
    for row in bind.execute(sa.select(devices)).mappings().all():
        tokens[row["id"]] = row["access_token"]
        values = {f"{n}_sealed": keyring.seal(row[n]) for n in SEALED if row[n] is not None}
        bind.execute(
            devices_sealed.update()
            .where(devices_sealed.c.id == row["id"])
            .values(token_digest=keyring.digest(row["access_token"]), **values)
        )
    inbox = sa.table("device_inbox", sa.column("id"), sa.column("device_id"), sa.column("topic"))
    for row in bind.execute(sa.select(inbox)).mappings().all():
        token = tokens.get(row["device_id"])
        if token and token in row["topic"]:
            topic = row["topic"].replace(token, TOKEN_MARK)
            bind.execute(inbox.update().where(inbox.c.id == row["id"]).values(topic=topic))
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_constraint("uq_devices_access_token", type_="unique")
        for name in SEALED:
            batch_op.drop_column(name)
        batch_op.alter_column("access_token_sealed", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("device_secret_sealed", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("token_digest", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_devices_token_digest"), ["token_digest"])


def downgrade() -> None:
    _secure_delete()
    keyring = sealing.keyring()
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("access_token", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("device_secret", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("login_username", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("command_topic", sa.String(length=160), nullable=True))
    bind = op.get_bind()
    devices = sa.table("devices", sa.column("id"), *(sa.column(n) for n in SEALED))
    sealed = sa.table("devices", sa.column("id"), *(sa.column(f"{n}_sealed") for n in SEALED))
    tokens: dict[int, str] = {}
    for row in bind.execute(sa.select(sealed)).mappings().all():
        values = {n: keyring.open(row[f"{n}_sealed"]) for n in SEALED if row[f"{n}_sealed"] is not None}
        tokens[row["id"]] = values["access_token"]
        bind.execute(devices.update().where(devices.c.id == row["id"]).values(**values))
    inbox = sa.table("device_inbox", sa.column("id"), sa.column("device_id"), sa.column("topic"))
    for row in bind.execute(sa.select(inbox)).mappings().all():
        if TOKEN_MARK in row["topic"] and row["device_id"] in tokens:
            topic = row["topic"].replace(TOKEN_MARK, tokens[row["device_id"]])
            bind.execute(inbox.update().where(inbox.c.id == row["id"]).values(topic=topic))
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_constraint("uq_devices_token_digest", type_="unique")
        for name in SEALED:
            batch_op.drop_column(f"{name}_sealed")
        batch_op.drop_column("token_digest")
        batch_op.alter_column("access_token", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("device_secret", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_devices_access_token"), ["access_token"])
