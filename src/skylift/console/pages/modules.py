"""Modules (seed 001's 新增模块): the modules of every product, a new one, and changing or deleting one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.campaigns import deletion_endpoints
from skylift.console import web
from skylift.console.auth import OperatorUser, ViewerUser
from skylift.deps import SessionDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageRequest
from skylift.registry import endpoints as registry
from skylift.registry import service
from skylift.registry.schemas import ModuleCreate, ModuleOut, ModulePatch, ProductOut

router = APIRouter()
PRODUCTS_SHOWN = 1000


async def _products(session: SessionDep, user: ViewerUser) -> list[ProductOut]:
    return (await registry.list_products(session, user.actor, PageRequest(PRODUCTS_SHOWN))).items


async def product_choices(session: SessionDep, user: ViewerUser) -> list[tuple[int, str]]:
    """(id, name) of every product, for a form's product field."""
    return [(p.id, p.name) for p in await _products(session, user)]


@router.get("/modules")
async def modules(request: Request, session: SessionDep, user: ViewerUser, product_id: Id | None = None) -> Response:
    form = web.Form(values={"product_id": str(product_id or "")})
    return await _list(request, session, user, product_id, form)


async def _list(
    request: Request, session: SessionDep, user: ViewerUser, product_id: int | None, form: web.Form
) -> Response:
    products = await _products(session, user)
    shown = [p for p in products if product_id is None or p.id == product_id]
    status = 422 if form.errors else 200
    return web.render(
        request,
        "modules.html",
        status=status,
        products=products,
        product_options=[(p.id, p.name) for p in products],
        shown=shown,
        product_id=product_id,
        form=form,
    )


@router.post("/modules")
async def create_module(request: Request, session: SessionDep, user: OperatorUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def create() -> ModuleOut:
        body = ModuleCreate.model_validate(
            web.given(values, "product_id", "name", "alias", "description", "version_property")
        )
        return await registry.create_module(body, session, user.actor)

    done = await web.perform(request, session, values, create)
    if isinstance(done, web.Form):
        product_id = values.get("product_id", "")
        return await _list(request, session, user, int(product_id) if product_id.isdigit() else None, done)
    return web.redirect(web.url("/modules", product_id=done.product_id), "created")


@router.get("/modules/{module_id}")
async def module(request: Request, module_id: Id, session: SessionDep, user: ViewerUser) -> Response:
    found = ModuleOut.model_validate(await service.get_module(session, module_id))
    form = web.Form(values=found.model_dump(mode="json"))
    return web.render(request, "module.html", module=found, form=form)


@router.post("/modules/{module_id}")
async def update_module(request: Request, module_id: Id, session: SessionDep, user: OperatorUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def update() -> ModuleOut:
        patch = {name: values.get(name, "").strip() for name in ("alias", "description")}
        body = ModulePatch.model_validate({**patch, **web.given(values, "version_property")})
        return await registry.update_module(module_id, body, session, user.actor)

    done = await web.perform(request, session, values, update)
    if isinstance(done, web.Form):
        found = ModuleOut.model_validate(await service.get_module(session, module_id))
        return web.render(request, "module.html", status=422, module=found, form=done)
    return web.redirect(web.url("/modules", product_id=done.product_id), "saved")


@router.post("/modules/{module_id}/delete")
async def delete_module(request: Request, module_id: Id, session: SessionDep, user: OperatorUser) -> Response:
    found = ModuleOut.model_validate(await service.get_module(session, module_id))
    done = await web.perform(
        request, session, {}, lambda: deletion_endpoints.delete_module(module_id, session, user.actor)
    )
    if isinstance(done, web.Form):
        return web.render(request, "module.html", status=409, module=found, form=done)
    return web.redirect(web.url("/modules", product_id=found.product_id), "deleted")
