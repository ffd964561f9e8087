from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from skylift.db.base import Base, TimestampMixin, UtcDateTime
from skylift.packages.models import Package
from skylift.registry.models import Device


class Campaign(TimestampMixin, Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(8))
    mode: Mapped[str] = mapped_column(String(16))
    push: Mapped[bool] = mapped_column(Boolean, default=True)
    source_versions: Mapped[list[str]] = mapped_column(JSON, default=list)
    ext_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), index=True)
    paused_reason: Mapped[str | None] = mapped_column(Text, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    # Who: {"device_ids": [..]} | {"all": true} | {"tags": [..]} | {"percent": p}, narrowed by source_versions.
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    offline: Mapped[str] = mapped_column(String(24), default="fail")
    # When: start, recurring runs, end, and a daily window in which notices may go out.
    start_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    cron: Mapped[str | None] = mapped_column(String(128), default=None)
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    window: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None)
    next_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    # How fast and how safely: staged groups, thresholds, pacing, timeouts, retries.
    groups: Mapped[list[float]] = mapped_column(JSON, default=list)
    current_group: Mapped[int] = mapped_column(Integer, default=0)
    success_threshold: Mapped[float] = mapped_column(Float, default=100.0)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    error_threshold: Mapped[dict[str, float] | None] = mapped_column(JSON, default=None)
    min_finished: Mapped[int] = mapped_column(Integer, default=1)
    on_error: Mapped[str] = mapped_column(String(8), default="pause")
    max_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    timeout_minutes: Mapped[float | None] = mapped_column(Float, default=None)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    retry_interval_minutes: Mapped[float] = mapped_column(Float, default=5.0)
    # A busy device's open attempt in another campaign is canceled (superseded) instead of the device skipped.
    supersede: Mapped[bool] = mapped_column(Boolean, default=False)
    # Failures already seen when an operator resumed: the error threshold judges only what follows.
    acknowledged_failed: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_finished: Mapped[int] = mapped_column(Integer, default=0)
    versions_before: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)

    package: Mapped[Package] = relationship()


class CampaignDevice(TimestampMixin, Base):
    """One device's attempt(s) in one campaign."""

    __tablename__ = "campaign_devices"
    __table_args__ = (UniqueConstraint("campaign_id", "device_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    module: Mapped[str] = mapped_column(String(64))
    target_version: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    # Place in the rollout order, and the staged group that place falls in.
    rank: Mapped[int] = mapped_column(Integer, default=0)
    group_index: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    step_desc: Mapped[str] = mapped_column(Text, default="")
    failure_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # True while the device has the whole file and its next version report decides the attempt.
    awaiting_version_report: Mapped[bool] = mapped_column(Boolean, default=False)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    campaign: Mapped[Campaign] = relationship()
    device: Mapped[Device] = relationship()


class NoticeOutbox(Base):
    """A notice that is due: written in the transaction that decided it, sent by the devices' relay.

    The relay sends a row once its device can hear it (connected and listening), then marks it sent
    with the connection it went to; after a crash, rows not yet marked go out again with the same
    message id, and so does a sent one whose device comes back still only notified."""

    __tablename__ = "notice_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("campaign_devices.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None, index=True)
    # The device's connection epoch the notice went out on (None: not sent, or sent before this was kept).
    sent_epoch: Mapped[int | None] = mapped_column(Integer, default=None)

    attempt: Mapped[CampaignDevice] = relationship()
