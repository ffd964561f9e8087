"""Packages (seed 000's 新增升级包): the list, an upload with a progress bar, one package with its results."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from skylift.campaigns import deletion_endpoints
from skylift.campaigns import endpoints as campaigns
from skylift.console import charts, web
from skylift.console.auth import OperatorApart, OperatorUser, ViewerUser
from skylift.console.pages.devices import number
from skylift.console.pages.modules import product_choices
from skylift.deps import ContextDep, NowDep, SessionDep
from skylift.kit.errors import SkyliftError
from skylift.kit.ids import Id
from skylift.kit.pagination import PageRequest
from skylift.packages import endpoints as packages
from skylift.packages.schemas import PackageOut, PackagePatch
from skylift.registry import endpoints as registry
from skylift.system import endpoints as system

router = APIRouter()
UPLOAD_FIELDS = (
    "type",
    "name",
    "product_id",
    "module",
    "version",
    "sign_method",
    "file",
    "verify_required",
    "description",
    "source_version",
)


@router.get("/packages")
async def package_list(
    request: Request,
    context: ContextDep,
    session: SessionDep,
    user: ViewerUser,
    product_id: str = "",
    enabled: str = "",
    offset: int = 0,
) -> Response:
    query = {"product_id": product_id, "enabled": enabled}
    page = await packages.list_packages(
        context,
        session,
        user.actor,
        PageRequest(web.PAGE_SIZE, max(offset, 0)),
        product_id=number(product_id),
        enabled={"true": True, "false": False}.get(enabled),
    )
    choices = await product_choices(session, user)
    modules = sorted(
        {
            m.name
            for p in (await registry.list_products(session, user.actor, PageRequest(1000))).items
            for m in p.modules
        }
    )
    parameters = await system.read_settings(session, user.actor)
    return web.render(
        request,
        "packages.html",
        page=page,
        query=query,
        filters=web.Form(values=query),
        form=web.Form(values={"product_id": product_id, "module": "default"}),
        products=choices,
        modules=modules,
        parameters=parameters,
    )


@router.post("/packages")
async def upload(request: Request, context: ContextDep, session: SessionDep, user: OperatorApart) -> Response:
    """The page's script sends the form here (with the CSRF token in a header) and shows its progress;
    the answer is JSON: where to go next, or the errors by field. As the API's upload, it holds no
    database lock while the files stream in."""
    try:
        package = await packages.create_package(request, context, session, user.actor)
    except SkyliftError as exc:
        await session.rollback()
        errors = web.errors_of(exc, web.catalog_of(request), set(UPLOAD_FIELDS))
        return JSONResponse({"errors": errors}, status_code=exc.status_code)
    response = JSONResponse({"redirect": web.url(f"/packages/{package.id}")}, status_code=201)
    web.remember_notice(response, "uploaded")
    return response


@router.get("/packages/{package_id}")
async def package(
    request: Request, package_id: Id, context: ContextDep, session: SessionDep, user: ViewerUser, now: NowDep
) -> Response:
    return await _detail(request, package_id, context, session, user, now, web.Form())


async def _detail(
    request: Request,
    package_id: int,
    context: ContextDep,
    session: SessionDep,
    user: ViewerUser,
    now: NowDep,
    form: web.Form,
) -> Response:
    catalog = web.catalog_of(request)
    found = await packages.read_package(package_id, context, session, user.actor)
    results = await campaigns.package_results(package_id, session, user.actor)
    product = await registry.read_product(found.product_id, session, user.actor)
    its_campaigns = await campaigns.list_campaigns(session, user.actor, now, PageRequest(100), package_id=package_id)
    shown = charts.of_results(catalog, results)
    if found.verification is not None and found.verification.targeted:
        share = found.verification.succeeded / found.verification.targeted
        shown["verification"] = charts.meter(catalog.gettext("Verification"), share, found.verification.state)
    status = 409 if form.errors else 200
    return web.render(
        request,
        "package.html",
        status=status,
        package=found,
        product=product,
        results=results,
        charts=shown,
        campaigns=its_campaigns.items,
        form=form,
    )


@router.post("/packages/{package_id}/enabled")
async def switch(
    request: Request, package_id: Id, context: ContextDep, session: SessionDep, user: OperatorUser, now: NowDep
) -> Response:
    values = web.text_fields(await web.form_of(request))
    enabled = values.get("enabled") == "true"

    async def patch() -> PackageOut:
        return await packages.patch_package(
            package_id, PackagePatch(enabled=enabled), context, session, user.actor, now
        )

    done = await web.perform(request, session, values, patch)
    if isinstance(done, web.Form):
        return await _detail(request, package_id, context, session, user, now, done)
    return web.redirect(web.url(f"/packages/{package_id}"), "enabled" if enabled else "disabled")


@router.post("/packages/{package_id}/delete")
async def delete(
    request: Request, package_id: Id, context: ContextDep, session: SessionDep, user: OperatorUser, now: NowDep
) -> Response:
    done = await web.perform(
        request, session, {}, lambda: deletion_endpoints.delete_package(package_id, context, session, user.actor, now)
    )
    if isinstance(done, web.Form):
        return await _detail(request, package_id, context, session, user, now, done)
    return web.redirect(web.url("/packages"), "deleted")
