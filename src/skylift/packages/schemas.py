from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from skylift.kit.ids import Id
from skylift.kit.strict import TextBool
from skylift.kit.versions import InvalidVersion, parse_version


class PackageFields(BaseModel):
    """The non-file fields of a package upload form."""

    model_config = ConfigDict(extra="forbid")

    product_id: Id
    module: str = Field(default="default", min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)
    version: str
    type: Literal["full", "diff"] = "full"
    sign_method: Literal["MD5", "SHA256"] = "MD5"
    verify_required: TextBool = False
    description: str = Field(default="", max_length=2000)
    source_version: str = Field(default="", max_length=255)

    @field_validator("sign_method", mode="before")
    @classmethod
    def _upper_sign_method(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("version")
    @classmethod
    def _version_is_a_version(cls, value: str) -> str:
        try:
            return parse_version(value).text
        except InvalidVersion as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _diff_names_its_source(self) -> PackageFields:
        if self.type == "diff":
            if not self.source_version.strip():
                raise ValueError("source_version: a diff package must name the version(s) it applies to")
            try:
                versions = sorted({parse_version(v.strip()) for v in self.source_version.split(",")})
            except InvalidVersion as exc:
                raise ValueError(f"source_version: {exc}") from exc
            self.source_version = ",".join(v.text for v in versions)
        elif self.source_version:
            raise ValueError("source_version: only a diff package has a source version")
        return self


class PackageFileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    size: int
    md5: str
    sha256: str


class VerificationOut(BaseModel):
    state: Literal["unverified", "verifying", "verified", "failed"]
    campaign_id: int | None = Field(description="The verify campaign this state comes from")
    succeeded: int
    targeted: int


class PackageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    product_id: int
    module: str
    name: str
    version: str
    type: str
    source_version: str | None = Field(description="A diff package: the versions it applies to, comma-separated")
    source_versions: list[str] = Field(description="The same, as a list (empty for a full image)")
    sign_method: str
    sign: str = Field(description="Signature of the first file with sign_method (hex digest)")
    verify_required: bool
    enabled: bool
    description: str
    files: list[PackageFileOut]
    verification: VerificationOut | None = Field(default=None, description="Set when verify_required")
    created_at: datetime


class PackagePatch(BaseModel):
    """Packages are immutable: only the description and the enabled flag can change."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    enabled: StrictBool | None = None


class DownloadUrlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: int = Field(default=3600, ge=1, le=7 * 86_400)


class DownloadUrlOut(BaseModel):
    url: str
    expires_at: datetime
