"""Bulk import of devices from CSV: every wrong row is listed with its error, or all devices are created."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from skylift.console import web
from skylift.console.auth import OperatorUser
from skylift.console.pages.devices import number
from skylift.console.pages.modules import product_choices
from skylift.deps import ContextDep, SessionDep
from skylift.kit.errors import Invalid, ItemError, SkyliftError
from skylift.registry import endpoints as registry

router = APIRouter()
EXAMPLE = "name,tags,gateway,address\ngw-1,site-a,,\nsensor-1,site-a;beta,gw-1,S1\n"


@router.get("/devices/import")
async def import_page(request: Request, session: SessionDep, user: OperatorUser) -> Response:
    choices = await product_choices(session, user)
    return web.render(request, "device_import.html", products=choices, form=web.Form(), rows=[], example=EXAMPLE)


@router.post("/devices/import")
async def import_devices(request: Request, context: ContextDep, session: SessionDep, user: OperatorUser) -> Response:
    form = await web.form_of(request)
    values = web.text_fields(form)
    upload = form.get("file")
    content = values.get("csv", "").encode()
    if isinstance(upload, UploadFile) and upload.filename:
        content = await upload.read()
    choices = await product_choices(session, user)
    catalog = web.catalog_of(request)
    product_id = number(values.get("product_id", ""))
    rows: list[ItemError] = []
    answer = web.Form(values=values)
    if product_id is None:
        answer.errors["product_id"] = catalog.gettext("This field is required.")
    elif not content.strip():
        answer.errors["csv"] = catalog.gettext("Paste the CSV here or choose a file.")
    else:
        try:
            async with web.savepoint(session):
                created = await registry.import_rows(context, session, user.actor, product_id, "text/csv", content)
        except SkyliftError as exc:
            rows = [ItemError(row=e.row, field=e.field, message=catalog.translate(e.message)) for e in exc.errors or []]
            if not rows or not isinstance(exc, Invalid):
                field = "product_id" if exc.field in ("product_id", "product_key") else "csv"
                answer.errors[field] = catalog.translate(exc.message)
        else:
            return web.render(request, "device_import_done.html", status=201, devices=created.items)
    return web.render(
        request, "device_import.html", status=422, products=choices, form=answer, rows=rows, example=EXAMPLE
    )
