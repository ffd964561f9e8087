from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skylift.kit.versions import InvalidVersion, parse_version

ExtValue = str | int | float | bool


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    type: Literal["upgrade", "verify"] = "upgrade"
    package_id: int
    device_ids: list[int] | None = Field(
        default=None, description="Target devices; omitted means every device of the package's product"
    )
    source_versions: list[str] = Field(default_factory=list, description="Only devices on one of these versions")
    protocol: Literal["http", "https"] = "http"
    mode: Literal["static"] = "static"
    push: bool = Field(default=True, description="Send the notice now to every targeted online device")
    ext_data: dict[str, ExtValue] = Field(default_factory=dict, description="Passed to devices as extData")

    @field_validator("source_versions")
    @classmethod
    def _versions(cls, values: list[str]) -> list[str]:
        try:
            return [parse_version(v).text for v in values]
        except InvalidVersion as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _verify_names_devices(self) -> CampaignCreate:
        if self.type == "verify" and not self.device_ids:
            raise ValueError("a verify campaign names its devices in device_ids")
        return self


class DeviceSelection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_ids: list[int] | None = Field(default=None, description="Omitted: every eligible device")


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
    source_versions: list[str]
    ext_data: dict[str, ExtValue]
    state: str
    targeted: int
    counts: dict[str, int]
    success_rate: float = Field(description="succeeded / targeted, 0..1")
    failure_reasons: dict[str, int]
    created_at: datetime
    finished_at: datetime | None


class CampaignDeviceOut(BaseModel):
    device_id: int
    device_name: str
    module: str
    target_version: str
    state: str
    progress: int
    step_desc: str
    failure_reason: str | None
    attempts: int
    notified_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
