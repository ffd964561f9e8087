from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skylift.db.base import Base, Sealed, SealedOrNone, TimestampMixin, UtcDateTime, unique_in_service

DEFAULT_MODULE = "default"


class Product(TimestampMixin, Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    product_key: Mapped[str] = mapped_column(String(32), unique=True)
    # Which upgrade-notice envelope product-key devices get: "alibaba" (code "1000") or "sagoo" ("200").
    notice_style: Mapped[str] = mapped_column(String(16), default="alibaba")
    # "Latest for everyone" (003's version library check): a device that polls gets the newest enabled
    # full package above its reported version even when no campaign targets it.
    auto_upgrade_latest: Mapped[bool] = mapped_column(Boolean, default=False)

    modules: Mapped[list[Module]] = relationship(back_populates="product", order_by="Module.id")


class Module(TimestampMixin, Base):
    __tablename__ = "modules"
    __table_args__ = (UniqueConstraint("product_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    alias: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    # The property an EZtCloud device reports this module's version in (`version`, `mcu_version`, ...).
    version_property: Mapped[str] = mapped_column(String(64), default="")

    product: Mapped[Product] = relationship(back_populates="modules")


class Device(TimestampMixin, Base):
    __tablename__ = "devices"
    # Names and gateway addresses are unique among devices in service: a decommissioned device keeps its
    # history, and its name can be given to the unit that replaces it.
    __table_args__ = (
        unique_in_service("uq_devices_product_id_name_in_service", "product_id", "name"),
        unique_in_service("uq_devices_gateway_id_address_in_service", "gateway_id", "address"),
        # Each replica looks for connections to close every second; few devices are ever waiting.
        Index(
            "ix_devices_node_disconnect_requested",
            "node",
            sqlite_where=text("disconnect_requested = 1"),
            postgresql_where=text("disconnect_requested"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # Credentials are sealed at rest (kit/sealing.py); a token is found by its keyed digest.
    access_token_sealed: Mapped[str] = mapped_column(Text)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    device_secret_sealed: Mapped[str] = mapped_column(Text)
    access_token = Sealed("access_token_sealed", digest="token_digest")
    device_secret = Sealed("device_secret_sealed")
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # Topic family the device last logged in with ("token" or "product_key"): notices go there.
    login_style: Mapped[str | None] = mapped_column(String(16), default=None)
    # The MQTT username of that login: EZtCloud topics (`command_send/{username}`) carry it. A token
    # device's username is its access token, so both are sealed like it.
    login_username_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    login_username = SealedOrNone("login_username_sealed")
    # Where EZtCloud commands for the device go: `command_send/{username}` once it subscribed there, or for
    # a sub-device `gateway_command_send/{its gateway's username}`. None: notices go to /ota/device/upgrade.
    command_topic_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    command_topic = SealedOrNone("command_topic_sealed")
    # A sub-device (003) is reached through its gateway, which names it by `address` in its messages.
    gateway_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True, default=None
    )
    address: Mapped[str | None] = mapped_column(String(64), default=None)
    # On its current connection the device subscribed where its notices go (for a sub-device: its
    # gateway relays), so a notice sent now is heard. Kept in the database, where every replica sees it.
    listening: Mapped[bool] = mapped_column(Boolean, default=False)
    # A gateway subscribed to `gateway_command_send` on its current connection: its sub-devices listen.
    relaying: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped on every accepted connection; a disconnect of an older connection is stale.
    connection_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # The replica (SKYLIFT_NODE) whose broker holds the device's connection (a sub-device's: its
    # gateway's): only that one can send it a notice.
    node: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    # Its credentials were revoked or changed: the replica holding its connection closes it.
    disconnect_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A disabled device is refused at login (MQTT and HTTP) until it is enabled again.
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Decommissioned (DELETE): disabled for good, left out of lists and campaigns, its history kept.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    product: Mapped[Product] = relationship()
    versions: Mapped[list[DeviceVersion]] = relationship(
        back_populates="device", order_by="DeviceVersion.module", cascade="all, delete-orphan"
    )


class DeviceVersion(Base):
    __tablename__ = "device_versions"
    __table_args__ = (UniqueConstraint("device_id", "module"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    module: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime())

    device: Mapped[Device] = relationship(back_populates="versions")
