"""The audit log: who did what to which object, and when, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.console import web
from skylift.console.auth import ViewerUser
from skylift.console.pages.devices import number
from skylift.deps import SessionDep
from skylift.kit.pagination import PageRequest
from skylift.system import endpoints as system

router = APIRouter()
TARGETS = ("product", "module", "device", "package", "campaign", "settings", "user")


@router.get("/audit")
async def audit(
    request: Request, session: SessionDep, user: ViewerUser, target_type: str = "", target_id: str = "", offset: int = 0
) -> Response:
    query = {"target_type": target_type if target_type in TARGETS else "", "target_id": target_id}
    page = await system.read_audit(
        session,
        user.actor,
        PageRequest(web.PAGE_SIZE * 2, max(offset, 0)),
        target_type=query["target_type"] or None,
        target_id=number(target_id),
    )
    return web.render(request, "audit.html", page=page, query=query, filters=web.Form(values=query), targets=TARGETS)
