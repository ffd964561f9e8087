"""Run-time settings (seed 000's 参数管理): the file size limit and the allowed extensions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.console import web
from skylift.console.auth import AdminUser, ViewerUser
from skylift.deps import SessionDep
from skylift.system import endpoints as system
from skylift.system.service import SystemParameters

router = APIRouter()


@router.get("/settings")
async def settings(request: Request, session: SessionDep, user: ViewerUser) -> Response:
    current = await system.read_settings(session, user.actor)
    values = {
        "max_file_size_mb": str(current.max_file_size_mb),
        "allowed_extensions": " ".join(current.allowed_extensions),
    }
    return web.render(request, "settings.html", form=web.Form(values=values), current=current)


@router.post("/settings")
async def save(request: Request, session: SessionDep, user: AdminUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def write() -> SystemParameters:
        extensions = values.get("allowed_extensions", "").replace(",", " ").split()
        body = SystemParameters.model_validate(
            {"max_file_size_mb": values.get("max_file_size_mb", "").strip(), "allowed_extensions": extensions}
        )
        return await system.write_settings(body, session, user.actor)

    done = await web.perform(request, session, values, write)
    if isinstance(done, web.Form):
        current = await system.read_settings(session, user.actor)
        return web.render(request, "settings.html", status=422, form=done, current=current)
    return web.redirect(web.url("/settings"), "saved")
