from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from skylift.campaigns.policy import valid_cron
from skylift.kit.ids import Id
from skylift.kit.versions import InvalidVersion, parse_version

ExtValue = str | int | float | bool
# Upper bounds of numeric campaign fields: counts fit 32-bit INTEGER columns; durations keep the engine's
# date arithmetic from overflowing.
MAX_COUNT = 2**31 - 1
MAX_MINUTES = 366 * 24 * 60


class Target(BaseModel):
    """Who a campaign is for. Filters combine (all must hold); `all` alone means the whole product."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    device_ids: list[Id] | None = Field(default=None, min_length=1)
    all: StrictBool | None = None
    tags: list[str] | None = Field(default=None, min_length=1, description="Devices carrying any of these tags")
    percent: float | None = Field(default=None, gt=0, le=100, description="A stable share of the fleet")

    @model_validator(mode="after")
    def _something(self) -> Target:
        if not (self.device_ids or self.all or self.tags or self.percent):
            raise ValueError("name device_ids, tags, percent, or all: true")
        return self


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: time = Field(description="Local time HH:MM at which notices may start going out")
    end: time = Field(description="Local time HH:MM after which no notice goes out (may be past midnight)")
    tz: str = "UTC"

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a time zone") from exc
        return value


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_at: datetime | None = Field(default=None, description="Start later instead of now")
    cron: str | None = Field(default=None, description="Recurring runs (UTC), e.g. '0 2 * * *'")
    end_at: datetime | None = Field(default=None, description="No notice goes out after this time")
    window: Window | None = Field(default=None, description="Daily window in which notices may go out")

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a time without a zone means UTC
        if value is not None:
            try:
                value.astimezone(UTC)  # stored in UTC: 0001-01-01T00:00+01:00 has no UTC time
            except OverflowError:
                raise ValueError("the time is out of range once converted to UTC") from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not valid_cron(value):
            hint = " (seconds are not supported: drop the first field)" if len(value.split()) == 6 else ""
            raise ValueError(f"{value!r} is not a cron expression of five fields: minute hour day month weekday{hint}")
        return value

    @model_validator(mode="after")
    def _order(self) -> Schedule:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at: must be after start_at")
        return self


class ErrorThresholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    percent: float | None = Field(default=None, gt=0, le=100)
    count: int | None = Field(default=None, ge=1, le=MAX_COUNT)

    @model_validator(mode="after")
    def _one(self) -> ErrorThresholdIn:
        if (self.percent is None) == (self.count is None):
            raise ValueError("give exactly one of percent or count")
        return self


class CampaignCreate(BaseModel):
    # A JSON number like 1e400 reads as infinity; no field of a campaign means that.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=128)
    type: Literal["upgrade", "verify"] = "upgrade"
    package_id: Id
    device_ids: list[Id] | None = Field(
        default=None, min_length=1, description="Shorthand for target.device_ids; omitted with no target = all"
    )
    target: Target | None = None
    source_versions: list[str] = Field(default_factory=list, description="Only devices on one of these versions")
    protocol: Literal["http", "https", "mqtt"] = "http"
    mode: Literal["static", "dynamic"] = Field(
        default="static", description="dynamic: also devices that come to match while the campaign is active"
    )
    push: StrictBool = Field(default=True, description="Send notices (otherwise devices ask for their upgrade)")
    offline: Literal["fail", "deliver_on_connect"] = Field(
        default="fail", description="A device offline at push time: fail it (retryable), or notify it when it connects"
    )
    schedule: Schedule | None = None
    groups: list[float] = Field(
        default_factory=list,
        max_length=100,
        description="Staged rollout: cumulative percents of the targets, e.g. [1, 10, 100]",
    )
    success_threshold: float = Field(
        default=100, ge=0, le=100, description="Percent of a group that must succeed before the next group starts"
    )
    approval_required: StrictBool = Field(default=False, description="Wait for an operator's approve before each group")
    error_threshold: ErrorThresholdIn | None = None
    min_finished: int = Field(
        default=1, ge=1, le=MAX_COUNT, description="Finished devices before the error threshold is judged"
    )
    on_error: Literal["pause", "abort"] = "pause"
    max_per_minute: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="At most this many notices in any minute"
    )
    timeout_minutes: float | None = Field(
        default=None,
        ge=0.05,
        le=MAX_MINUTES,
        description="Fail a device silent this long (since its last message) as timeout (at most a year)",
    )
    retry_count: int = Field(default=0, ge=0, le=20, description="Automatic retries of a failed device")
    retry_interval_minutes: float = Field(default=5, ge=0, le=7 * 24 * 60, description="At most a week")
    ext_data: dict[str, ExtValue] = Field(default_factory=dict, description="Passed to devices as extData")
    supersede: StrictBool = Field(
        default=False,
        description="A device with an open attempt on the same module in another campaign: cancel that attempt "
        "(superseded) instead of skipping the device (busy)",
    )

    @field_validator("source_versions")
    @classmethod
    def _versions(cls, values: list[str]) -> list[str]:
        try:
            return [parse_version(v).text for v in values]
        except InvalidVersion as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("groups")
    @classmethod
    def _groups(cls, values: list[float]) -> list[float]:
        if not values:
            return values
        if any(not 0 < v <= 100 for v in values) or any(b <= a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError("groups are increasing cumulative percents in (0, 100]")
        if values[-1] != 100:
            raise ValueError("the last group must be 100 (use target.percent to reach only part of the fleet)")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> CampaignCreate:
        if self.device_ids is not None:
            if self.target is not None:
                raise ValueError("device_ids: give either device_ids or target, not both")
            self.target = Target(device_ids=self.device_ids)
        if self.type == "verify" and not (self.target and self.target.device_ids):
            raise ValueError("device_ids: a verify campaign names its devices")
        return self

    def resolved_target(self) -> Target:
        return self.target or Target(all=True)


class DeviceSelection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_ids: list[Id] | None = Field(default=None, description="Omitted: every eligible device")


class CampaignOut(BaseModel):
    id: int
    name: str
    type: str
    product_id: int
    package_id: int
    version: str
    module: str
    protocol: str
    mode: str
    push: bool
    offline: str
    target: dict[str, object]
    source_versions: list[str]
    schedule: dict[str, object]
    groups: list[float]
    current_group: int = Field(description="0-based index of the group being rolled out")
    success_threshold: float
    approval_required: bool
    error_threshold: dict[str, float] | None
    min_finished: int
    on_error: str
    max_per_minute: int | None
    timeout_minutes: float | None
    retry_count: int
    retry_interval_minutes: float
    ext_data: dict[str, ExtValue]
    supersede: bool
    state: str = Field(description="scheduled, running, paused, finished, canceled or aborted")
    waiting_reason: str | None = Field(
        default=None, description="Why no notice goes out now: start time, cron, window, pacing, approval, package"
    )
    paused_reason: str | None
    targeted: int = Field(description="Devices in the campaign, not counting skipped ones")
    counts: dict[str, int]
    success_rate: float = Field(description="succeeded / targeted, 0..1")
    failure_reasons: dict[str, int]
    created_at: datetime
    started_at: datetime | None
    next_run_at: datetime | None
    finished_at: datetime | None


class CampaignDeviceOut(BaseModel):
    device_id: int
    device_name: str
    module: str
    target_version: str
    state: str
    group: int
    progress: int
    step_desc: str
    failure_reason: str | None
    attempts: int
    notified_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class TimelinePoint(BaseModel):
    minute: datetime
    succeeded: int
    failed: int


class Results(BaseModel):
    counts: dict[str, int]
    targeted: int
    success_rate: float
    failure_reasons: dict[str, int]
    timeline: list[TimelinePoint] = Field(description="Devices that finished, per minute")
    versions_before: dict[str, int] = Field(description="Versions of the module on the targeted devices at start")
    versions_after: dict[str, int] = Field(description="Versions of the module on the same devices now")
