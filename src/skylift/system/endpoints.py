from __future__ import annotations

from fastapi import APIRouter

from skylift.deps import AdminDep, SessionDep
from skylift.system import service
from skylift.system.service import SystemParameters

router = APIRouter(prefix="/settings", tags=["settings"])


@router.get("", response_model=SystemParameters)
async def read_settings(session: SessionDep, _: AdminDep) -> SystemParameters:
    return await service.get_parameters(session)


@router.put("", response_model=SystemParameters)
async def write_settings(body: SystemParameters, session: SessionDep, _: AdminDep) -> SystemParameters:
    return await service.put_parameters(session, body)
