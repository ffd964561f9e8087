from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9_.:@-]{1,64}$"


class ProductCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    notice_style: Literal["alibaba", "sagoo"] = "alibaba"


class ModuleCreate(BaseModel):
    product_id: int
    name: str = Field(pattern=NAME_PATTERN)
    alias: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=2000)


class ModuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    product_id: int
    name: str
    alias: str
    description: str


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    product_key: str
    notice_style: str
    modules: list[ModuleOut]
    created_at: datetime


TAG_PATTERN = r"^[^\s,]{1,64}$"
Tags = list[Annotated[str, Field(pattern=TAG_PATTERN)]]


class DeviceCreate(BaseModel):
    product_id: int
    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits and _ . : @ -; unique in the product")
    tags: Tags = Field(default_factory=list, max_length=32, description="Labels campaigns can target")


class DevicePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: Tags | None = Field(default=None, max_length=32)


class DeviceOut(BaseModel):
    id: int
    product_id: int
    product_key: str
    name: str
    access_token: str
    device_secret: str
    online: bool
    last_seen_at: datetime | None
    tags: list[str]
    versions: dict[str, str] = Field(description="Reported version per module")
    created_at: datetime


class VersionDistribution(BaseModel):
    module: str
    versions: dict[str, int]
