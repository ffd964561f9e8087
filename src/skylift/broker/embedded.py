"""The embedded MQTT broker (amqtt), hardened for device fleets.

amqtt 0.12 looks up and replaces the session named by a CONNECT's client id before it checks
credentials, so a wrong-password CONNECT could knock a live device off. Here credentials are
checked first, broker sessions are keyed by the authenticated device rather than the free-form
client id, and a newer connection of a device closes the older socket (last connection wins).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.broker import Broker
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

from skylift.broker.plugins import IDENTITY_KEY, identity_of
from skylift.devices.hub import DeviceHub
from skylift.devices.identity import session_key_for

log = logging.getLogger(__name__)

PLUGINS = ("DeviceAuthPlugin", "DeviceTopicPlugin", "DeviceMessagePlugin")


def broker_config(host: str, port: int, hub: DeviceHub) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": -1}},
        "timeout_disconnect_delay": 2,
        "plugins": {f"skylift.broker.plugins.{name}": {"hub": hub} for name in PLUGINS},
    }


class SkyliftBroker(Broker):  # type: ignore[misc]
    def __init__(self, config: dict[str, Any], hub: DeviceHub) -> None:
        super().__init__(config)
        self.hub = hub

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        except (AMQTTError, MQTTError, NoDataError) as exc:
            await writer.close()
            raise AMQTTError(f"no valid CONNECT from {remote_address}:{remote_port}: {exc}") from exc

        if not await self._authenticate(session, None):
            # Refuse before any existing session is looked at: an impostor must not disturb it.
            session.parent = 0
            handler.attach(session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise AMQTTError(f"bad credentials from {remote_address}:{remote_port}")

        identity = identity_of(session)
        assert identity is not None  # set by DeviceAuthPlugin on success
        session.client_id = identity.session_key
        existing = self._sessions.get(session.client_id)
        if existing is not None and existing[0].transitions.is_connected():
            log.info("device %s connected again; closing its older connection", identity.device_id)
            await self.close_session(session.client_id)

        if session.clean_session or existing is None:
            if existing is not None:
                await self._delete_session(session.client_id)
            session.parent = 0
        else:
            kept = existing[0]
            for attribute in (
                "will_flag",
                "will_message",
                "will_topic",
                "will_qos",
                "keep_alive",
                "username",
                "password",
            ):
                setattr(kept, attribute, getattr(session, attribute))
            kept.attributes[IDENTITY_KEY] = identity
            session = kept
            session.parent = 1

        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def close_session(self, session_key: str) -> bool:
        """Close the live connection of a broker session, if any; True when one was closed."""
        existing = self._sessions.get(session_key)
        if existing is None or not existing[0].transitions.is_connected():
            return False
        await existing[1].handle_connection_closed()
        await self._stop_handler(existing[1])
        return True

    async def _handle_client_session(
        self, reader: Any, writer: Any, client_session: Session, handler: Any, server: Any, listener_name: str
    ) -> None:
        identity = identity_of(client_session)
        epoch = await self.hub.connected(identity) if identity is not None else 0
        try:
            await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)
        finally:
            if identity is not None:
                # Shielded: a cancelled connection task must still record that the device left.
                await asyncio.shield(self.hub.disconnected(identity, epoch))


class EmbeddedBroker:
    def __init__(self, host: str, port: int, hub: DeviceHub) -> None:
        self._broker = SkyliftBroker(broker_config(host, port, hub), hub)

    async def start(self) -> None:
        await self._broker.start()

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._broker.internal_message_broadcast(topic, payload, qos=1)

    async def disconnect(self, device_id: int) -> None:
        """Drop a device's connection (its credentials were revoked)."""
        await self._broker.close_session(session_key_for(device_id))

    async def stop(self) -> None:
        await self._broker.shutdown()
