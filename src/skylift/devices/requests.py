"""Answering a device that asks for its upgrade, in the dialect of the topic (or HTTP call) it asked on.

A notice answers when an attempt is open for the module; otherwise "nothing pending": the same
envelope with empty params (token devices) or empty data (product-key devices, Alibaba's get_reply).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import attempts, latest
from skylift.campaigns.outbox import new_message_id
from skylift.db.session import Database
from skylift.devices.dialects import alink, eztcloud, product_key, token
from skylift.devices.dialects.base import MessageId, Notice, UpgradeRequested
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.notices import Notifier
from skylift.devices.topics import Route
from skylift.registry.models import Product
from skylift.registry.service import canonical_module


@dataclass(frozen=True)
class Offer:
    """What a device that asked for its upgrade gets: the notice, or None when nothing is open."""

    notice: Notice | None
    notice_style: str


async def _offer(
    session: AsyncSession,
    notifier: Notifier,
    identity: DeviceIdentity,
    module: str | None,
    message_id: MessageId,
    now: datetime,
) -> Offer:
    """The notice of the device's open attempt for `module` (default: the whole device), if any."""
    product = await session.get(Product, identity.product_id)
    style = product.notice_style if product is not None else "alibaba"
    attempt = await attempts.offer(session, identity.device_id, module, now)
    return Offer(notifier.compose(attempt, message_id, now) if attempt is not None else None, style)


def render_offer(style: LoginStyle, offer: Offer, message_id: MessageId) -> bytes:
    """The notice, or "nothing pending", in a token or product-key envelope."""
    if style is LoginStyle.TOKEN:
        return token.render_notice(offer.notice) if offer.notice else token.render_nothing_pending(message_id)
    if offer.notice:
        return product_key.render_notice(offer.notice, offer.notice_style)
    return product_key.render_nothing_pending(message_id, offer.notice_style)


async def answer(
    database: Database,
    notifier: Notifier,
    identity: DeviceIdentity,
    route: Route,
    request: UpgradeRequested,
    now: datetime,
) -> tuple[str, bytes]:
    """(topic, payload) answering a request; sent by the caller once the transaction has committed."""
    message_id = new_message_id() if request.message_id is None else request.message_id
    async with database.transaction() as session:
        offer = await _offer(session, notifier, identity, request.module, message_id, now)
    if route.family == "sys":
        return route.reply_topic, alink.render_get_reply(message_id, offer.notice, offer.notice_style)
    # Answer in the family of the topic the device asked on (its token, or its product key and name).
    style = LoginStyle.TOKEN if route.topic_id == identity.access_token else LoginStyle.PRODUCT_KEY
    return route.reply_topic, render_offer(style, offer, message_id)


async def answer_http(
    database: Database, notifier: Notifier, identity: DeviceIdentity, module: str | None, now: datetime
) -> bytes | None:
    """The notice for an HTTP device's upgrade check, in its dialect, or None when nothing is pending."""
    message_id = new_message_id()
    async with database.transaction() as session:
        offer = await _offer(session, notifier, identity, module, message_id, now)
    return render_offer(identity.login_style, offer, message_id) if offer.notice is not None else None


async def answer_check(
    database: Database, notifier: Notifier, identity: DeviceIdentity, request: UpgradeRequested, now: datetime
) -> dict[str, Any]:
    """The `otaUpgrade` command answering an EZtCloud `otaCheck` (seed 003), with the request's id.

    First the device's open campaign attempt for the module (as for any request); else, where the
    product allows it, the newest package above its reported version (campaigns/latest.py); else
    `upgrade: false`. The module is named as the device named it (`main` when it named none)."""
    message_id = new_message_id() if request.message_id is None else request.message_id
    async with database.transaction() as session:
        offer = await _offer(session, notifier, identity, request.module, message_id, now)
        notice = offer.notice
        if notice is None:
            attempt = await latest.offer(session, identity.device_id, identity.product_id, request.module, now)
            notice = notifier.compose(attempt, message_id, now) if attempt is not None else None
    module = eztcloud.module_label(canonical_module(request.module), request.module)
    return eztcloud.command(notice, module, message_id)
