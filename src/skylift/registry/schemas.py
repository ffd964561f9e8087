from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from skylift.kit.ids import Id

NAME_PATTERN = r"^[A-Za-z0-9_.:@-]{1,64}$"
# An EZtCloud property identifier, as a device puts it in its attributes report.
PROPERTY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
AUTO_UPGRADE_LATEST = (
    "Devices that poll (EZtCloud otaCheck) get the newest enabled full package above their reported version, "
    "even when no campaign targets them"
)
VERSION_PROPERTY = (
    "The attributes property that carries this module's version (EZtCloud); "
    "default `version` for the default module, `{name}_version` (lower case) for others"
)


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    notice_style: Literal["alibaba", "sagoo"] = "alibaba"
    auto_upgrade_latest: StrictBool = Field(default=False, description=AUTO_UPGRADE_LATEST)


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    notice_style: Literal["alibaba", "sagoo"] | None = None
    auto_upgrade_latest: StrictBool | None = Field(default=None, description=AUTO_UPGRADE_LATEST)


class ModuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Id
    name: str = Field(pattern=NAME_PATTERN)
    alias: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=2000)
    version_property: str | None = Field(default=None, pattern=PROPERTY_PATTERN, description=VERSION_PROPERTY)


class ModulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=2000)
    version_property: str | None = Field(default=None, pattern=PROPERTY_PATTERN, description=VERSION_PROPERTY)


class ModuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    product_id: int
    name: str
    alias: str
    description: str
    version_property: str


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    product_key: str
    notice_style: str
    auto_upgrade_latest: bool
    modules: list[ModuleOut]
    created_at: datetime


TAG_PATTERN = r"^[^\s,]{1,64}$"
Tags = list[Annotated[str, Field(pattern=TAG_PATTERN)]]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Id
    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits and _ . : @ -; unique in the product")
    tags: Tags = Field(default_factory=list, max_length=32, description="Labels campaigns can target")
    gateway_id: Id | None = Field(default=None, description="Register a sub-device under this gateway (EZtCloud)")
    address: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="How the gateway names the sub-device; unique per gateway"
    )


class DevicePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: Tags | None = Field(default=None, max_length=32)
    enabled: StrictBool | None = Field(default=None, description="false: refused at login, live connection closed")


class DeviceOut(BaseModel):
    id: int
    product_id: int
    product_key: str
    name: str
    online: bool
    enabled: bool
    last_seen_at: datetime | None
    tags: list[str]
    versions: dict[str, str] = Field(description="Reported version per module")
    gateway_id: int | None = Field(description="The gateway a sub-device is reached through")
    address: str | None = Field(description="The sub-device's name in its gateway's messages")
    notice_channel: str = Field(
        description="Where notices go: ota (/ota/device/upgrade/...), eztcloud (command_send/...) or gateway"
    )
    created_at: datetime
    deleted_at: datetime | None = Field(
        description="When the device was decommissioned (DELETE); null while in service"
    )


class DeviceWithCredentials(DeviceOut):
    """A device as created or given new credentials: the only answers that carry them unasked."""

    access_token: str = Field(description="Token devices: MQTT username, and bearer token of the HTTP device API")
    device_secret: str = Field(description="Product-key devices: MQTT password, or key of Alibaba's signed login")


class DeviceCredentials(BaseModel):
    """What a device logs in with (reading them is recorded in the audit log)."""

    device_id: int
    product_key: str
    device_name: str
    access_token: str = Field(description="Token devices: MQTT username, and bearer token of the HTTP device API")
    device_secret: str = Field(description="Product-key devices: MQTT password, or key of Alibaba's signed login")
    mqtt_username: str = Field(description="Product-key devices' MQTT username: `{DeviceName}&{ProductKey}`")


class VersionDistribution(BaseModel):
    module: str
    versions: dict[str, int]


class ImportRow(BaseModel):
    """One device of a bulk import (a CSV line `name,tags,gateway,address`, or an object of a JSON array)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    tags: Tags = Field(default_factory=list, max_length=32, description="In CSV: separated by `;`")
    gateway: Id | Annotated[str, Field(pattern=NAME_PATTERN)] | None = Field(
        default=None,
        description="The gateway of a sub-device: its id, or the name of a device of the same product "
        "(one registered already, or one of this import)",
    )
    address: str | None = Field(default=None, pattern=NAME_PATTERN, description="How the gateway names it")
