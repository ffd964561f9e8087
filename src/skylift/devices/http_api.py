"""The device protocol over HTTP, for devices without MQTT: report a version, check for an upgrade,
report progress. Bodies are the MQTT payloads; answers are in the device's own dialect.

A token device sends `Authorization: Bearer <access token>`. A product-key device sends
`X-Product-Key`, `X-Device-Name`, `X-Timestamp` (Unix milliseconds, within 5 minutes of the
server's clock) and `X-Sign`: hex HMAC-SHA256 keyed by its device secret over
`deviceName{dn}productKey{pk}timestamp{T}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from skylift.deps import ContextDep
from skylift.devices import credentials, requests
from skylift.devices import service as device_service
from skylift.devices.dialects import ota
from skylift.devices.dialects.base import MAX_MODULE_LENGTH, MalformedMessage, ProgressReported, VersionReported
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.kit import metrics
from skylift.kit.errors import Invalid, TooLarge, Unauthorized, error_responses

router = APIRouter(prefix="/device/v1", tags=["device protocol (HTTP)"], responses=error_responses(401, 413, 422))
_bearer = HTTPBearer(auto_error=False, description="A token device's access token")


async def authenticate_device(
    context: ContextDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_product_key: Annotated[str | None, Header()] = None,
    x_device_name: Annotated[str | None, Header()] = None,
    x_timestamp: Annotated[str | None, Header(description="Unix time in milliseconds")] = None,
    x_sign: Annotated[str | None, Header(description="hex HMAC-SHA256 of the device secret")] = None,
) -> DeviceIdentity:
    async with context.database.transaction() as session:
        if bearer is not None:
            identity = await credentials.by_token(session, bearer.credentials)
        elif x_product_key and x_device_name and x_timestamp and x_sign:
            identity = await credentials.authenticate_signed(
                session, x_product_key, x_device_name, x_timestamp, x_sign, context.clock.now()
            )
        else:
            raise Unauthorized(
                "device credentials are required: Authorization: Bearer <access token>, "
                "or X-Product-Key, X-Device-Name, X-Timestamp and X-Sign"
            )
        if identity is None:
            raise Unauthorized("the device credentials are wrong, or the signature has expired")
        await device_service.mark_seen(session, identity.device_id, context.clock.now())
    return identity


DeviceDep = Annotated[DeviceIdentity, Depends(authenticate_device)]


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it grows past the device message limit."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"a device message is at most {limit} bytes", field="body")
    return bytes(body)


async def _report(
    request: Request,
    context: ContextDep,
    identity: DeviceIdentity,
    kind: str,
    parse: Callable[[bytes], VersionReported | ProgressReported],
) -> Response:
    body = await _read_body(request, context.settings.mqtt_max_payload_bytes)
    try:
        event = parse(body)
    except MalformedMessage as exc:
        metrics.MALFORMED_MESSAGES.labels(kind=kind).inc()
        raise Invalid(exc.reason, field="body") from exc
    metrics.DEVICE_MESSAGES.labels(kind=kind).inc()
    if isinstance(event, ProgressReported) and identity.login_style is LoginStyle.PRODUCT_KEY:
        event = dataclasses.replace(event, done_at_100=False)  # seed 004: the version report decides
    await context.device_hub.apply(identity, event)
    return Response(status_code=204)


_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("/inform", status_code=204, response_class=Response, openapi_extra=_BODY_DOC)
async def inform(request: Request, context: ContextDep, identity: DeviceDep) -> Response:
    """Version report: `{"id": "1", "params": {"version": "1.0.1", "module": "MCU"}}` (module optional)."""
    return await _report(request, context, identity, "inform", ota.parse_inform)


@router.post("/progress", status_code=204, response_class=Response, openapi_extra=_BODY_DOC)
async def progress(request: Request, context: ContextDep, identity: DeviceDep) -> Response:
    """Progress: `{"step": "50", "desc": "...", "module": "MCU"}` or `{"id": 1, "params": {"step", "desc"}}`."""
    return await _report(request, context, identity, "progress", ota.parse_progress)


@router.get(
    "/upgrade",
    response_class=Response,
    responses={200: {"description": "The upgrade notice in the device's dialect"}, 204: {"description": "None"}},
)
async def upgrade(
    context: ContextDep,
    identity: DeviceDep,
    module: Annotated[str | None, Query(max_length=MAX_MODULE_LENGTH)] = None,
) -> Response:
    """The notice of the device's open upgrade of `module` (default: the whole device), or 204."""
    metrics.DEVICE_MESSAGES.labels(kind="request").inc()
    hub = context.device_hub
    notice = await requests.answer_http(context.database, hub.notifier, identity, module, context.clock.now())
    if notice is None:
        return Response(status_code=204)
    return Response(content=notice, media_type="application/json")
