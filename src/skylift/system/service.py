"""Run-time system parameters (seed 000: 系统配置 → 参数管理), effective at once on every replica."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.system.models import SystemParameter

DEFAULT_EXTENSIONS = [
    ".bin",
    ".img",
    ".dav",
    ".tar",
    ".gz",
    ".zip",
    ".gzip",
    ".apk",
    ".tar.gz",
    ".tar.xz",
    ".pack",
]


class SystemParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_file_size_mb: int = Field(default=1000, ge=1, le=1_000_000)
    allowed_extensions: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSIONS), min_length=1)

    @field_validator("allowed_extensions")
    @classmethod
    def _normalise_extensions(cls, values: list[str]) -> list[str]:
        normalised: list[str] = []
        for value in values:
            ext = value.strip().lower()
            if not ext.startswith("."):
                ext = "." + ext
            if len(ext) < 2 or any(ch in ext for ch in "/\\ "):
                raise ValueError(f"{value!r} is not a file extension")
            if ext not in normalised:
                normalised.append(ext)
        return normalised

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_size_mb * 1024 * 1024


async def get_parameters(session: AsyncSession) -> SystemParameters:
    rows = (await session.scalars(select(SystemParameter))).all()
    stored = {row.key: row.value for row in rows if row.key in SystemParameters.model_fields}
    return SystemParameters.model_validate(stored)


async def put_parameters(session: AsyncSession, parameters: SystemParameters) -> SystemParameters:
    for key, value in parameters.model_dump().items():
        row = await session.get(SystemParameter, key)
        if row is None:
            session.add(SystemParameter(key=key, value=value))
        else:
            row.value = value
    await session.flush()
    return parameters
