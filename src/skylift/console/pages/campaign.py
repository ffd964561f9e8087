"""One campaign: what it is, why it waits, its devices' progress live, and what an operator can do to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from skylift.campaigns import deletion_endpoints
from skylift.campaigns import endpoints as campaigns
from skylift.campaigns.results import AttemptState
from skylift.console import charts, web
from skylift.console.auth import OperatorUser, ViewerUser
from skylift.deps import NowDep, SessionDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageRequest

router = APIRouter()
ATTEMPT_STATES: tuple[AttemptState, ...] = (
    "pending",
    "notified",
    "downloading",
    "upgrading",
    "succeeded",
    "failed",
    "canceled",
    "skipped",
)
OPEN_CAMPAIGN = ("scheduled", "running", "paused")
LIVE_EVERY_MS = 1500


async def _live(
    request: Request, campaign_id: int, session: SessionDep, user: ViewerUser, now: NowDep, state: str, offset: int
) -> dict[str, Any]:
    """What the live part of the page shows: counts, charts and one page of the devices."""
    catalog = web.catalog_of(request)
    campaign = await campaigns.read_campaign(campaign_id, session, user.actor, now)
    results = await campaigns.campaign_results(campaign_id, session, user.actor)
    chosen = next((s for s in ATTEMPT_STATES if s == state), None)
    page = await campaigns.campaign_devices(
        campaign_id, session, user.actor, PageRequest(web.PAGE_SIZE, max(offset, 0)), state=chosen
    )
    finished = sum(campaign.counts.get(s, 0) for s in ("succeeded", "failed", "canceled"))
    shown = {
        **charts.of_results(catalog, results),
        "progress": charts.meter(
            catalog.gettext("Finished"),
            finished / campaign.targeted if campaign.targeted else 0.0,
            catalog.gettext("finished"),
        ),
    }
    busy = any(campaign.counts.get(s, 0) for s in ("pending", "notified", "downloading", "upgrading"))
    return {
        "campaign": campaign,
        "results": results,
        "page": page,
        "charts": shown,
        "finished": finished,
        "state": chosen or "",
        "offset": max(offset, 0),
        "states": ATTEMPT_STATES,
        # Keep refreshing while anything may still change.
        "live": campaign.state in OPEN_CAMPAIGN or busy,
        "every": LIVE_EVERY_MS,
    }


@router.get("/campaigns/{campaign_id}")
async def campaign(
    request: Request,
    campaign_id: Id,
    session: SessionDep,
    user: ViewerUser,
    now: NowDep,
    state: str = "",
    offset: int = 0,
) -> Response:
    return await _page(request, campaign_id, session, user, now, state, offset, web.Form())


async def _page(
    request: Request,
    campaign_id: int,
    session: SessionDep,
    user: ViewerUser,
    now: NowDep,
    state: str,
    offset: int,
    form: web.Form,
) -> Response:
    shown = await _live(request, campaign_id, session, user, now, state, offset)
    return web.render(request, "campaign.html", status=409 if form.errors else 200, form=form, **shown)


@router.get("/campaigns/{campaign_id}/live")
async def live(
    request: Request,
    campaign_id: Id,
    session: SessionDep,
    user: ViewerUser,
    now: NowDep,
    state: str = "",
    offset: int = 0,
) -> Response:
    """The live part alone: the page's script puts it in place of the old one every few seconds."""
    shown = await _live(request, campaign_id, session, user, now, state, offset)
    return web.render(request, "campaign_live.html", **shown)


async def _act(
    request: Request,
    campaign_id: int,
    session: SessionDep,
    user: OperatorUser,
    now: NowDep,
    work: Callable[[], Awaitable[object]],
    notice: str,
) -> Response:
    done = await web.perform(request, session, {}, work)
    if isinstance(done, web.Form):
        return await _page(request, campaign_id, session, user, now, "", 0, done)
    back = request.headers.get("referer", "")
    target = back if back.startswith(str(request.base_url).rstrip("/") + f"/campaigns/{campaign_id}") else ""
    return web.redirect(target or web.url(f"/campaigns/{campaign_id}"), notice)


# What an operator does to a campaign, or to one device in it: the API's endpoint and what the page says.
CAMPAIGN_ACTIONS: dict[str, tuple[Callable[..., Awaitable[object]], str]] = {
    "pause": (campaigns.pause, "paused"),
    "resume": (campaigns.resume, "resumed"),
    "approve": (campaigns.approve, "approved"),
    "cancel": (campaigns.cancel, "canceled"),
    "retry": (campaigns.retry, "retried"),  # every failed device
}
DEVICE_ACTIONS: dict[str, tuple[Callable[..., Awaitable[object]], str]] = {
    "retry": (campaigns.retry_device, "retried"),
    "cancel": (campaigns.cancel_device, "canceled"),
}


@router.post("/campaigns/{campaign_id}/devices/{device_id}/{action}")
async def act_on_device(
    request: Request, campaign_id: Id, device_id: Id, action: str, session: SessionDep, user: OperatorUser, now: NowDep
) -> Response:
    if action not in DEVICE_ACTIONS:
        raise HTTPException(404)
    endpoint, notice = DEVICE_ACTIONS[action]
    work = partial(endpoint, campaign_id, device_id, session, user.actor, now)
    return await _act(request, campaign_id, session, user, now, work, notice)


@router.post("/campaigns/{campaign_id}/delete")
async def delete(request: Request, campaign_id: Id, session: SessionDep, user: OperatorUser, now: NowDep) -> Response:
    done = await web.perform(
        request, session, {}, lambda: deletion_endpoints.delete_campaign(campaign_id, session, user.actor)
    )
    if isinstance(done, web.Form):
        return await _page(request, campaign_id, session, user, now, "", 0, done)
    return web.redirect(web.url("/campaigns"), "deleted")


@router.post("/campaigns/{campaign_id}/{action}")
async def act(
    request: Request, campaign_id: Id, action: str, session: SessionDep, user: OperatorUser, now: NowDep
) -> Response:
    if action not in CAMPAIGN_ACTIONS:
        raise HTTPException(404)
    endpoint, notice = CAMPAIGN_ACTIONS[action]
    return await _act(
        request, campaign_id, session, user, now, partial(endpoint, campaign_id, session, user.actor, now), notice
    )
