"""The overview: the fleet by product, campaigns under way, and the latest failures."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.campaigns import results
from skylift.campaigns.endpoints import list_campaigns
from skylift.console import charts, web
from skylift.console.auth import ViewerUser
from skylift.deps import NowDep, SessionDep
from skylift.kit.pagination import PageRequest
from skylift.registry import listing

router = APIRouter()
UNDER_WAY: tuple[results.CampaignState, ...] = ("running", "paused", "scheduled")


@router.get("/")
async def overview(request: Request, session: SessionDep, user: ViewerUser, now: NowDep) -> Response:
    catalog = web.catalog_of(request)
    products, product_count = await listing.list_products(session, PageRequest(limit=web.PAGE_SIZE))
    fleet = []
    for product in products:
        _, total = await listing.list_devices(session, listing.DeviceFilter(product.id), PageRequest(limit=1))
        _, online = await listing.list_devices(
            session, listing.DeviceFilter(product.id, online=True), PageRequest(limit=1)
        )
        fleet.append((product, total, online))
    chart = charts.bars(
        catalog.gettext("Devices by product"),
        [
            charts.Bar(p.name, total, text=catalog.gettext("{total} ({online} online)").format(total=total, online=o))
            for p, total, o in fleet
        ],
        catalog.gettext("No devices yet."),
    )
    under_way = []
    for state in UNDER_WAY:
        page = await list_campaigns(session, user.actor, now, PageRequest(limit=10), state=state)
        under_way += page.items
    failures = await results.attempts_across(session, 10, failed_only=True)
    return web.render(
        request,
        "overview.html",
        fleet=fleet,
        product_count=product_count,
        fleet_chart=chart,
        campaigns=under_way,
        failures=failures,
    )
