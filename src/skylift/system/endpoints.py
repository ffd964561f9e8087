from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from skylift.deps import AdminDep, ReadingDep, SessionDep, ViewerDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageDep
from skylift.kit.schemas import Page
from skylift.system import audit, service
from skylift.system.service import SystemParameters

router = APIRouter(prefix="/settings", tags=["settings"])


@router.get("", response_model=SystemParameters)
async def read_settings(session: ReadingDep, _: ViewerDep) -> SystemParameters:
    return await service.get_parameters(session)


@router.put("", response_model=SystemParameters)
async def write_settings(body: SystemParameters, session: SessionDep, actor: AdminDep) -> SystemParameters:
    parameters = await service.put_parameters(session, body)
    audit.record(session, actor, "settings.update", "settings", None, **parameters.model_dump())
    return parameters


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: int | None
    details: dict[str, Any]


audit_router = APIRouter(prefix="/audit", tags=["audit"])


@audit_router.get("", response_model=Page[AuditEventOut])
async def read_audit(
    session: ReadingDep,
    _: ViewerDep,
    page: PageDep,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Id | None = None,
    before_id: Annotated[Id | None, Query(description="Page backwards: events older than this id")] = None,
) -> Page[AuditEventOut]:
    """Newest first."""
    events, total = await audit.list_events(session, target_type, target_id, before_id, page)
    return page.answer([AuditEventOut.model_validate(e) for e in events], total)
