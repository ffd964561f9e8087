"""Campaigns (seeds 000/001's 升级包验证 and 批次, with the rollout options): the list and a new one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.campaigns import endpoints as campaigns
from skylift.campaigns.results import CampaignState
from skylift.campaigns.schemas import CampaignCreate, CampaignOut
from skylift.console import web
from skylift.console.auth import OperatorUser, ViewerUser
from skylift.console.pages.devices import number
from skylift.console.pages.modules import product_choices
from skylift.deps import ContextDep, NowDep, SessionDep
from skylift.kit.errors import Invalid
from skylift.kit.pagination import PageRequest
from skylift.packages import endpoints as packages
from skylift.registry import listing

router = APIRouter()
STATES: tuple[CampaignState, ...] = ("scheduled", "running", "paused", "finished", "canceled", "aborted")
PACKAGES_SHOWN = 1000
# The form's text fields as the schema names them; the rest are checkboxes or built from several fields.
TEXT_FIELDS = (
    "name",
    "type",
    "package_id",
    "protocol",
    "mode",
    "offline",
    "schedule.start_at",
    "schedule.end_at",
    "schedule.cron",
    "schedule.window.start",
    "schedule.window.end",
    "schedule.window.tz",
    "success_threshold",
    "error_threshold.percent",
    "error_threshold.count",
    "min_finished",
    "on_error",
    "max_per_minute",
    "timeout_minutes",
    "retry_count",
    "retry_interval_minutes",
)
DEFAULTS = {
    "type": "upgrade",
    "protocol": "http",
    "mode": "static",
    "offline": "fail",
    "push": "true",
    "success_threshold": "100",
    "min_finished": "1",
    "on_error": "pause",
    "retry_count": "0",
    "retry_interval_minutes": "5",
    "schedule.window.tz": "UTC",
}


@router.get("/campaigns")
async def campaign_list(
    request: Request,
    session: SessionDep,
    user: ViewerUser,
    now: NowDep,
    product_id: str = "",
    state: str = "",
    offset: int = 0,
) -> Response:
    query = {"product_id": product_id, "state": state}
    chosen = next((s for s in STATES if s == state), None)
    page = await campaigns.list_campaigns(
        session,
        user.actor,
        now,
        PageRequest(web.PAGE_SIZE, max(offset, 0)),
        product_id=number(product_id),
        state=chosen,
    )
    choices = await product_choices(session, user)
    return web.render(
        request,
        "campaigns.html",
        page=page,
        query=query,
        filters=web.Form(values=query),
        products=choices,
        states=STATES,
    )


async def _form(
    request: Request, context: ContextDep, session: SessionDep, user: ViewerUser, form: web.Form
) -> Response:
    enabled = await packages.list_packages(context, session, user.actor, PageRequest(PACKAGES_SHOWN), enabled=True)
    options = [(p.id, f"{p.name} · {p.module} {p.version} · {p.type}") for p in reversed(enabled.items)]
    status = 422 if form.errors else 200
    return web.render(request, "campaign_new.html", status=status, form=form, packages=options)


@router.get("/campaigns/new")
async def new_campaign(
    request: Request, context: ContextDep, session: SessionDep, user: OperatorUser, package_id: str = "", type: str = ""
) -> Response:
    values = {**DEFAULTS, "package_id": package_id, "type": type if type in ("verify", "upgrade") else "upgrade"}
    return await _form(request, context, session, user, web.Form(values=values))


def _words(text: str) -> list[str]:
    return [word for word in text.replace(",", " ").split() if word]


def _ext_data(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            key, equals, value = line.partition("=")
            if not equals or not key.strip():
                raise Invalid(f"{line.strip()!r} is not key=value", field="ext_data")
            pairs[key.strip()] = value.strip()
    return pairs


def _nested(values: dict[str, str]) -> dict[str, Any]:
    """The form's dotted fields (schedule.window.start) as the nested body the API takes."""
    body: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = values.get(name, "").strip()
        if not value:
            continue
        *parents, last = name.split(".")
        target = body
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    return body


async def _device_ids(
    context: ContextDep, session: SessionDep, user: ViewerUser, package_id: int | None, text: str
) -> list[int]:
    """Devices named by id or by name (in the package's product)."""
    ids: list[int] = []
    unknown: list[str] = []
    product_id = None
    if package_id is not None:
        product_id = (await packages.read_package(package_id, context, session, user.actor)).product_id
    for word in _words(text):
        if word.isdigit():
            ids.append(int(word))
            continue
        found, _ = await listing.list_devices(session, listing.DeviceFilter(product_id, q=word), PageRequest(50))
        match = next((d.id for d in found if d.name == word), None)
        if match is None:
            unknown.append(word)
        else:
            ids.append(match)
    if unknown:
        raise Invalid(f"no device named {', '.join(unknown)} in the package's product", field="device_ids")
    return ids


@router.post("/campaigns")
async def create_campaign(
    request: Request, context: ContextDep, session: SessionDep, user: OperatorUser, now: NowDep
) -> Response:
    values = web.text_fields(await web.form_of(request))
    for name in ("device_ids", "target.tags", "target.percent", "source_versions", "groups", "ext_data"):
        values.setdefault(name, "")

    async def create() -> CampaignOut:
        body = _nested(values)
        for flag in ("push", "approval_required", "supersede"):
            body[flag] = web.checked(values, flag)
        if "schedule" in body and "window" in body["schedule"]:
            body["schedule"]["window"].setdefault("tz", "UTC")
            if set(body["schedule"]["window"]) == {"tz"}:
                del body["schedule"]["window"]
        target: dict[str, Any] = {}
        if values["target.tags"].strip():
            target["tags"] = _words(values["target.tags"])
        if values["target.percent"].strip():
            target["percent"] = values["target.percent"].strip()
        if values["device_ids"].strip():
            target["device_ids"] = await _device_ids(
                context, session, user, number(values.get("package_id", "")), values["device_ids"]
            )
        if target:
            body["target"] = target
        body["source_versions"] = _words(values["source_versions"])
        body["groups"] = _words(values["groups"])
        body["ext_data"] = _ext_data(values["ext_data"])
        return await campaigns.create_campaign(CampaignCreate.model_validate(body), context, session, user.actor, now)

    # The target's fields are the form's device_ids, target.tags and target.percent.
    done = await web.perform(request, session, values, create, aliases={"target.device_ids": "device_ids"})
    if isinstance(done, web.Form):
        return await _form(request, context, session, user, done)
    return web.redirect(web.url(f"/campaigns/{done.id}"), "created")
