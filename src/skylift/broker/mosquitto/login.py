"""The login check Mosquitto's Skylift plugin calls for every device CONNECT.

The plugin presents what the CONNECT carried; the answer says whether the device may connect and,
if so, the rules of its topics (`topics.broker_rules`), which the plugin then applies to each of its
PUBLISH, SUBSCRIBE and deliveries. Only the plugin may call: it sends the broker service password as
a bearer token.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from skylift.deps import ContextDep
from skylift.devices.credentials import MAX_CREDENTIAL_LENGTH
from skylift.devices.topics import auto_subscriptions, broker_rules
from skylift.kit.errors import NotFound, Unauthorized, error_responses

router = APIRouter(prefix="/broker/v1", tags=["external broker"], responses=error_responses(401, 404, 422))
_bearer = HTTPBearer(auto_error=False, description="The broker service password")


class BrokerLogin(BaseModel):
    username: str = Field(max_length=MAX_CREDENTIAL_LENGTH)
    password: str = Field(default="", max_length=MAX_CREDENTIAL_LENGTH)
    client_id: str = Field(default="", max_length=MAX_CREDENTIAL_LENGTH)


def _plugin_only(context: ContextDep, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected = context.settings.mqtt_broker_password
    if context.settings.mqtt_broker_url is None or expected is None:
        raise NotFound("no external broker is configured")
    if bearer is None or not hmac.compare_digest(bearer.credentials.encode(), expected.encode()):
        raise Unauthorized("the broker service password is required")


@router.post("/login", dependencies=[Depends(_plugin_only)], summary="Check a device's MQTT login (for the plugin)")
async def login(body: BrokerLogin, context: ContextDep) -> dict[str, Any]:
    identity = await context.device_hub.authenticate(body.username, body.password, body.client_id)
    if identity is None:
        return {"allow": False}
    return {
        "allow": True,
        "auto_subscribe": identity.auto_subscribe,
        "auto_topics": list(auto_subscriptions(identity)) if identity.auto_subscribe else [],
        **broker_rules(identity),
    }
