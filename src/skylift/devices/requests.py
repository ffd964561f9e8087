"""Answering a device that asks for its upgrade, in the dialect of the topic (or HTTP call) it asked on.

A notice answers when an attempt is open for the module; otherwise "nothing pending": the same
envelope with empty params (token devices) or empty data (product-key devices, Alibaba's get_reply).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from skylift.db.session import Database
from skylift.devices import latest
from skylift.devices import service as device_service
from skylift.devices.dialects import alink, eztcloud, product_key, token
from skylift.devices.dialects.base import MessageId, UpgradeRequested
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.notices import Notifier, new_message_id
from skylift.devices.topics import Route
from skylift.registry.service import canonical_module


def render_offer(style: LoginStyle, offer: device_service.Offer, message_id: MessageId) -> bytes:
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
        offer = await device_service.upgrade_requested(session, notifier, identity, request.module, now, message_id)
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
        offer = await device_service.upgrade_requested(session, notifier, identity, module, now, message_id)
    return render_offer(identity.login_style, offer, message_id) if offer.notice is not None else None


async def answer_check(
    database: Database, notifier: Notifier, identity: DeviceIdentity, request: UpgradeRequested, now: datetime
) -> dict[str, Any]:
    """The `otaUpgrade` command answering an EZtCloud `otaCheck` (seed 003), with the request's id.

    First the device's open campaign attempt for the module (as for any request); else, where the
    product allows it, the newest package above its reported version (devices/latest.py); else
    `upgrade: false`. The module is named as the device named it (`main` when it named none)."""
    message_id = new_message_id() if request.message_id is None else request.message_id
    async with database.transaction() as session:
        offer = await device_service.upgrade_requested(session, notifier, identity, request.module, now, message_id)
        notice = offer.notice or await latest.offer(session, notifier, identity, request.module, message_id, now)
    module = eztcloud.module_label(canonical_module(request.module), request.module)
    return eztcloud.command(notice, module, message_id)
