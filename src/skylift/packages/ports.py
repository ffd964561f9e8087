"""What packages need from the capabilities above them, wired in at app assembly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from skylift.packages.models import Package
from skylift.packages.schemas import VerificationOut

# The verification state of a package (seed 000's 升级包验证), judged from its verify campaigns.
VerificationOf = Callable[[AsyncSession, Package], Awaitable[VerificationOut]]

# A package was enabled or disabled: campaigns stop (or may resume) its rollout in the same transaction.
PackageSwitched = Callable[[AsyncSession, Package, datetime], Awaitable[None]]
