"""Devices: search, filters and pages; a new device; one device with its versions, history and credentials."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.campaigns import deletion_endpoints, results
from skylift.console import web
from skylift.console.auth import AdminUser, OperatorUser, ViewerUser
from skylift.console.pages.modules import product_choices
from skylift.deps import ContextDep, NowDep, SessionDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageRequest
from skylift.registry import endpoints as registry
from skylift.registry.schemas import DeviceCreate, DeviceOut, DevicePatch, DeviceWithCredentials

router = APIRouter()
HISTORY = 50


def number(text: str) -> int | None:
    """A filter's id from the query string; anything else is "no filter"."""
    return int(text) if text.isdigit() and 0 < int(text) < 2**63 else None


def tags_of(text: str) -> list[str]:
    return [tag for tag in text.replace(",", " ").split() if tag]


@router.get("/devices")
async def devices(
    request: Request,
    session: SessionDep,
    user: ViewerUser,
    product_id: str = "",
    q: str = "",
    online: str = "",
    tag: str = "",
    offset: int = 0,
) -> Response:
    return await _list(request, session, user, {"product_id": product_id, "q": q, "online": online, "tag": tag}, offset)


async def _list(
    request: Request,
    session: SessionDep,
    user: ViewerUser,
    query: dict[str, str],
    offset: int,
    form: web.Form | None = None,
) -> Response:
    online = {"true": True, "false": False}.get(query.get("online", ""))
    page = await registry.list_devices(
        session,
        user.actor,
        PageRequest(web.PAGE_SIZE, max(offset, 0)),
        product_id=number(query.get("product_id", "")),
        q=query.get("q", "").strip()[:64] or None,
        online=online,
        tag=tags_of(query.get("tag", "")) or None,
    )
    choices = await product_choices(session, user)
    filters = web.Form(values=query)
    new = form or web.Form(values={"product_id": query.get("product_id", "")})
    status = 422 if new.errors else 200
    return web.render(
        request, "devices.html", status=status, page=page, query=query, filters=filters, form=new, products=choices
    )


@router.post("/devices")
async def create_device(request: Request, context: ContextDep, session: SessionDep, user: OperatorUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def create() -> DeviceWithCredentials:
        body = DeviceCreate.model_validate(
            {
                **web.given(values, "product_id", "name", "gateway_id", "address"),
                "tags": tags_of(values.get("tags", "")),
            }
        )
        return await registry.create_device(body, context, session, user.actor)

    done = await web.perform(request, session, values, create)
    if isinstance(done, web.Form):
        return await _list(request, session, user, {"product_id": values.get("product_id", "")}, 0, done)
    # The one time the credentials are shown unasked: on the page that answers the creation.
    return web.render(request, "credentials.html", status=201, device=done, credentials=done, created=True)


@router.get("/devices/{device_id}")
async def device(request: Request, device_id: Id, session: SessionDep, user: ViewerUser) -> Response:
    return await _detail(request, device_id, session, user, web.Form())


async def _detail(request: Request, device_id: int, session: SessionDep, user: ViewerUser, form: web.Form) -> Response:
    found: DeviceOut = await registry.read_device(device_id, session, user.actor)
    history = await results.attempts_across(session, HISTORY, device_id=device_id)
    if not form.values:
        form.values = {"tags": " ".join(found.tags)}
    status = 422 if form.errors else 200
    return web.render(request, "device.html", status=status, device=found, history=history, form=form)


@router.post("/devices/{device_id}")
async def update_device(
    request: Request, device_id: Id, context: ContextDep, session: SessionDep, user: OperatorUser
) -> Response:
    """Tags, or enabled (the form's `enabled` field, when it has one)."""
    values = web.text_fields(await web.form_of(request))

    async def update() -> DeviceOut:
        if "enabled" in values:
            body = DevicePatch(enabled=values["enabled"] == "true")
        else:
            body = DevicePatch.model_validate({"tags": tags_of(values.get("tags", ""))})
        return await registry.update_device(device_id, body, context, session, user.actor)

    done = await web.perform(request, session, values, update)
    if isinstance(done, web.Form):
        return await _detail(request, device_id, session, user, done)
    notice = {"true": "enabled", "false": "disabled"}.get(values.get("enabled", ""), "saved")
    return web.redirect(web.url(f"/devices/{device_id}"), notice)


@router.post("/devices/{device_id}/credentials")
async def reveal_credentials(request: Request, device_id: Id, session: SessionDep, user: AdminUser) -> Response:
    """Admins only; each reading is in the audit log (the API's GET /devices/{id}/credentials)."""
    found = await registry.read_device(device_id, session, user.actor)
    credentials = await registry.read_credentials(device_id, session, user.actor)
    return web.render(request, "credentials.html", device=found, credentials=credentials, created=False)


@router.post("/devices/{device_id}/credentials/new")
async def rotate_credentials(
    request: Request, device_id: Id, context: ContextDep, session: SessionDep, user: AdminUser
) -> Response:
    done = await registry.rotate_credentials(device_id, context, session, user.actor)
    return web.render(request, "credentials.html", device=done, credentials=done, created=True)


@router.post("/devices/{device_id}/delete")
async def delete_device(
    request: Request, device_id: Id, context: ContextDep, session: SessionDep, user: OperatorUser, now: NowDep
) -> Response:
    done = await web.perform(
        request, session, {}, lambda: deletion_endpoints.delete_device(device_id, context, session, user.actor, now)
    )
    if isinstance(done, web.Form):
        return await _detail(request, device_id, session, user, done)
    return web.redirect(web.url("/devices"), "deleted")
