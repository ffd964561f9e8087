"""Products: the list, a new product, one product with its settings, modules and version distribution."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.campaigns import deletion_endpoints
from skylift.console import charts, web
from skylift.console.auth import OperatorUser, ViewerUser
from skylift.deps import ContextDep, SessionDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageRequest
from skylift.registry import endpoints as registry
from skylift.registry.schemas import ProductCreate, ProductOut, ProductPatch

router = APIRouter()
NOTICE_STYLES = ("alibaba", "sagoo")


@router.get("/products")
async def products(request: Request, session: SessionDep, user: ViewerUser, offset: int = 0) -> Response:
    return await _list(request, session, user, offset, web.Form())


async def _list(request: Request, session: SessionDep, user: ViewerUser, offset: int, form: web.Form) -> Response:
    page = await registry.list_products(session, user.actor, PageRequest(web.PAGE_SIZE, max(offset, 0)))
    status = 422 if form.errors else 200
    return web.render(request, "products.html", status=status, page=page, form=form, styles=NOTICE_STYLES)


@router.post("/products")
async def create_product(request: Request, session: SessionDep, user: OperatorUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def create() -> ProductOut:
        body = ProductCreate.model_validate(
            {
                **web.given(values, "name", "description", "notice_style"),
                "auto_upgrade_latest": web.checked(values, "auto_upgrade_latest"),
            }
        )
        return await registry.create_product(body, session, user.actor)

    done = await web.perform(request, session, values, create)
    if isinstance(done, web.Form):
        return await _list(request, session, user, 0, done)
    return web.redirect(web.url(f"/products/{done.id}"), "created")


@router.get("/products/{product_id}")
async def product(request: Request, product_id: Id, session: SessionDep, user: ViewerUser) -> Response:
    return await _detail(request, product_id, session, user, web.Form())


async def _detail(request: Request, product_id: int, session: SessionDep, user: ViewerUser, form: web.Form) -> Response:
    found = await registry.read_product(product_id, session, user.actor)
    catalog = web.catalog_of(request)
    distributions = []
    for module in found.modules:
        versions = await registry.product_versions(product_id, session, user.actor, module.name)
        distributions.append(
            (
                module,
                charts.distribution(
                    catalog.gettext("Versions of {module}").format(module=module.name),
                    versions.versions,
                    catalog.gettext("No device has reported this module yet."),
                ),
            )
        )
    if not form.values:
        form.values = {"description": found.description, "notice_style": found.notice_style}
        if found.auto_upgrade_latest:
            form.values["auto_upgrade_latest"] = "true"
    status = 422 if form.errors else 200
    return web.render(
        request,
        "product.html",
        status=status,
        product=found,
        form=form,
        styles=NOTICE_STYLES,
        distributions=distributions,
    )


@router.post("/products/{product_id}")
async def update_product(request: Request, product_id: Id, session: SessionDep, user: OperatorUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def update() -> ProductOut:
        body = ProductPatch.model_validate(
            {
                "description": values.get("description", ""),
                "notice_style": values.get("notice_style") or None,
                "auto_upgrade_latest": web.checked(values, "auto_upgrade_latest"),
            }
        )
        return await registry.update_product(product_id, body, session, user.actor)

    done = await web.perform(request, session, values, update)
    if isinstance(done, web.Form):
        return await _detail(request, product_id, session, user, done)
    return web.redirect(web.url(f"/products/{product_id}"), "saved")


@router.post("/products/{product_id}/delete")
async def delete_product(
    request: Request, product_id: Id, context: ContextDep, session: SessionDep, user: OperatorUser
) -> Response:
    done = await web.perform(
        request, session, {}, lambda: deletion_endpoints.delete_product(product_id, context, session, user.actor)
    )
    if isinstance(done, web.Form):
        return await _detail(request, product_id, session, user, done)
    return web.redirect(web.url("/products"), "deleted")
