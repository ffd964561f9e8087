"""The embedded MQTT broker (amqtt), hardened for device fleets.

amqtt 0.12 looks up and replaces the session named by a CONNECT's client id before it checks
credentials, so a wrong-password CONNECT could knock a live device off. Here credentials are
checked first, broker sessions are keyed by the authenticated device rather than the free-form
client id, and a newer connection of a device closes the older socket (last connection wins).

Devices may subscribe with wildcard filters, so what a device receives is checked message by
message (`may_read`), for live and retained messages alike; a session whose filters overlap gets
each message once. Alibaba SDK devices with `_ss=1` in their client id are subscribed to their
downlink topics by the broker itself, before their CONNACK goes out.

A device's PUBLISH is acknowledged only once the device inbox has recorded it (see intake.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.contexts import ListenerType
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.events import BrokerEvents
from amqtt.mqtt.connack import NOT_AUTHORIZED, SERVER_UNAVAILABLE
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import OutgoingApplicationMessage, Session
from transitions import MachineError

from skylift.broker.delivery import send_at_least_once
from skylift.broker.intake import DeviceProtocolHandler, GatedReader, refuse_wildcard_publishes
from skylift.broker.lean import LeanBroker, slim_session
from skylift.broker.limits import ConnectionGate, ConnectionLimits, PacketTooLarge
from skylift.broker.plugins import IDENTITY_KEY, identity_of
from skylift.broker.rates import RateGate, RateLimits
from skylift.broker.sessions import Subscriptions, sessions_to_drop
from skylift.devices.hub import DeviceHub
from skylift.devices.identity import DeviceIdentity, session_key_for
from skylift.devices.topics import auto_subscriptions, may_publish, may_read, topic_matches
from skylift.kit import metrics

log = logging.getLogger(__name__)

UNSUBSCRIBE_RECORD_SECONDS = 10.0  # how long an UNSUBACK waits for the hub (the database) at most

PLUGINS = ("DeviceAuthPlugin", "DeviceTopicPlugin", "DeviceMessagePlugin")
REFUSED = 0x80  # SUBACK return code of a refused filter


@dataclass(frozen=True)
class Listener:
    """A port the broker listens on; with a certificate and key it speaks MQTT over TLS."""

    name: str
    host: str
    port: int
    tls_files: tuple[Path, Path] | None = None


def broker_config(listeners: Sequence[Listener], hub: DeviceHub) -> dict[str, Any]:
    config: dict[str, Any] = {"default": {"type": "tcp"}}  # amqtt needs one named so; without a bind it is off
    for listener in listeners:
        entry: dict[str, Any] = {"type": "tcp", "bind": f"{listener.host}:{listener.port}", "max_connections": -1}
        if listener.tls_files is not None:
            entry.update(ssl=True, certfile=str(listener.tls_files[0]), keyfile=str(listener.tls_files[1]))
        config[listener.name] = entry
    return {
        "listeners": config,
        "plugins": {f"skylift.broker.plugins.{name}": {"hub": hub} for name in PLUGINS},
    }


async def _close(writer: Any) -> None:
    """Close a connection that may already be gone (reset by the peer, or closed by the gate)."""
    with contextlib.suppress(OSError):
        await writer.close()


class SkyliftBroker(LeanBroker):
    def __init__(self, config: dict[str, Any], hub: DeviceHub, limits: ConnectionLimits, rates: RateLimits) -> None:
        super().__init__(config)
        refuse_wildcard_publishes()
        self._subscriptions = Subscriptions()
        # client id -> its filters, so that a connect or a disconnect touches its own filters, not every one.
        self._filters_of: dict[str, set[str]] = {}
        self.hub = hub
        self.limits = limits
        self.gate = ConnectionGate(limits)
        self.rates = RateGate(rates)
        self._tokens: dict[StreamWriterAdapter, int] = {}  # sockets not yet logged in -> their gate token
        # Granted filters with `+` or `#`; a message is matched against these and its own topic only.
        self._wildcard_filters: set[str] = set()

    async def _session_monitor(self) -> None:
        """amqtt's clean-up of sessions that left and keep nothing, once a second, over those only: amqtt
        walks every session (30 ms a second with 10,000 connected). No session expiry is configured."""
        while True:
            for client_id in sessions_to_drop(self._sessions):
                await self._cleanup_session(client_id)
            await asyncio.sleep(1)

    async def _create_server_instance(
        self, listener_name: str, listener_type: Any, address: str | None, port: int, ssl_context: ssl.SSLContext | None
    ) -> Any:
        if ssl_context is None or listener_type != ListenerType.TCP:
            return await super()._create_server_instance(listener_name, listener_type, address, port, ssl_context)
        # The TLS handshake comes before the gate sees the socket: it gets the CONNECT timeout too.
        return await asyncio.start_server(
            partial(self.stream_connected, listener_name=listener_name),
            address,
            port,
            reuse_address=True,
            ssl=ssl_context,
            ssl_handshake_timeout=self.limits.connect_timeout_seconds,
        )

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        token = self.gate.admit(address, writer.transport.abort)
        if token is None:
            writer.transport.abort()
            return
        writer_adapter = StreamWriterAdapter(writer)
        self._tokens[writer_adapter] = token
        try:
            gated = GatedReader(
                StreamReaderAdapter(reader), None, self.limits.max_packet_bytes, abort=writer.transport.abort
            )
            await self._client_connected(listener_name, gated, writer_adapter)
        finally:
            self._tokens.pop(writer_adapter, None)
            self.gate.release(token, address)

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        try:
            handler, session = await asyncio.wait_for(
                DeviceProtocolHandler.init_from_connect(reader, writer, self.plugins_manager),
                self.limits.connect_timeout_seconds,
            )
            handler.serve(self.hub, self)
            slim_session(session, self._relay_from)
        except TimeoutError as exc:
            metrics.REFUSED_CONNECTIONS.labels(reason="no CONNECT in time").inc()
            await _close(writer)
            raise AMQTTError(f"no CONNECT from {remote_address}:{remote_port} in time") from exc
        except (AMQTTError, MQTTError, NoDataError, PacketTooLarge) as exc:
            await _close(writer)
            raise AMQTTError(f"no valid CONNECT from {remote_address}:{remote_port}: {exc}") from exc
        token = self._tokens.get(writer)
        if token is not None:
            self.gate.logged_in(token)

        refusal = await self._refusal(session, remote_address, time.monotonic())
        if refusal is not None:
            # Refuse before any existing session is looked at: an impostor must not disturb it.
            reason, code = refusal
            metrics.REFUSED_CONNECTIONS.labels(reason=reason).inc()
            session.parent = 0
            handler.attach(session, reader, writer)
            await handler.refuse_connect(code)
            await _close(writer)
            raise AMQTTError(f"{reason} from {remote_address}:{remote_port}")

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

        if identity.auto_subscribe:
            await self._auto_subscribe(session, identity)
        return handler, session

    async def _refusal(self, session: Session, address: str, now: float) -> tuple[str, int] | None:
        """Why a CONNECT is refused, with its CONNACK return code; None when it is accepted."""
        if self.rates.login_backed_off(address, now):
            return "login back-off", SERVER_UNAVAILABLE  # credentials are not even looked at
        if not await self._authenticate(session, None):
            self.rates.login_failed(address, now)
            return "bad credentials", NOT_AUTHORIZED
        if session.will_flag and not self._may_publish(session, session.will_topic or ""):
            return "will not allowed", NOT_AUTHORIZED
        identity = identity_of(session)
        if identity is not None and not self.rates.may_connect(identity.device_id, now):
            return "too many connects", SERVER_UNAVAILABLE
        return None

    async def _room(self, device_id: int) -> None:
        """Before each packet of a device: room in its inbox, and its message rate."""
        await self.hub.inbox.wait_for_room(device_id)
        delay = self.rates.message_delay(device_id, time.monotonic())
        if delay > 0:
            metrics.SLOWED_READS.inc()
            await asyncio.sleep(delay)

    async def _auto_subscribe(self, session: Session, identity: DeviceIdentity) -> None:
        """Subscribe the device to its downlink topics, QoS 1, before its CONNACK goes out: nothing
        sent to it from then on can miss it."""
        for topic in auto_subscriptions(identity):
            # amqtt keeps one entry per client id: one left by a session that never got registered
            # (a connection that failed half way) would otherwise stand in for this one.
            subscribers = self._subscriptions.get(topic, [])
            subscribers[:] = [(s, qos) for s, qos in subscribers if s is session or s.client_id != session.client_id]
            await self.add_subscription((topic, QOS_1), session)

    def _standing_filters(self, session: Session, identity: DeviceIdentity) -> Sequence[str]:
        """The filters a session holds before the device subscribes: a kept session's, and the broker's own."""
        if session.parent:
            return [
                topic_filter
                for topic_filter in self._filters_of.get(session.client_id, ())
                if any(subscriber is session for subscriber, _ in self._subscriptions.get(topic_filter, ()))
            ]
        return auto_subscriptions(identity) if identity.auto_subscribe else ()

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
        if identity is not None:
            # What the session already hears counts as subscribed (queued before any of its messages).
            for topic_filter in self._standing_filters(client_session, identity):
                self.hub.subscribed(identity, topic_filter)
            if isinstance(reader, GatedReader):
                reader.room = partial(self._room, identity.device_id)
        try:
            await self._serve_session(reader, writer, client_session, handler, listener_name)
        finally:
            if isinstance(reader, GatedReader):
                reader.stop_watching()
            if identity is not None:
                # Shielded: a cancelled connection task must still record that the device left.
                await asyncio.shield(self.hub.disconnected(identity, epoch))

    async def _serve_session(
        self, reader: Any, writer: Any, session: Session, handler: BrokerProtocolHandler, listener_name: str
    ) -> None:
        """amqtt 0.12's `_handle_client_session`, except that retained messages are looked up for the
        session's own filters, only when there are any: amqtt awaits a lookup for every filter of every
        device at each connect, which made connecting a fleet quadratic."""
        authenticated = await self._authenticate(session, self.listeners_config[listener_name])
        while True:
            try:
                session.transitions.connect()
                break
            except (MachineError, ValueError):
                if session.transitions.is_connected():
                    old = self._sessions[session.client_id]
                    await old[1].handle_connection_closed()
                    await old[1].stop()
                    break
                log.warning("client %s is reconnecting too quickly, make it wait", session.client_id)
                await asyncio.sleep(1)
        handler.attach(session, reader, writer)
        self._sessions[session.client_id] = (session, handler)
        await handler.mqtt_connack_authorize(authenticated)
        if not authenticated:
            await writer.close()
            return
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_CONNECTED, client_id=session.client_id, client_session=session
        )
        if isinstance(reader, GatedReader):
            reader.keep_alive(session.keep_alive)
            session.keep_alive = 0  # amqtt's reader would read each packet under a timeout that does nothing
        await handler.start()
        await self._publish_session_retained_messages(session)
        if self._retained_messages:
            for topic_filter in list(self._filters_of.get(session.client_id, ())):
                await self._publish_retained_messages_for_subscription((topic_filter, QOS_0), session)
        await self._client_message_loop(session, handler)

    async def _handle_unsubscription(self, session: Session, handler: Any, waiter: asyncio.Future[Any]) -> None:
        """amqtt's step, except that the UNSUBACK waits until the hub has committed what the device still
        hears: a device told it is unsubscribed is no longer counted as listening."""
        unsubscription = waiter.result()
        for topic_filter in unsubscription.topics:
            self._del_subscription(topic_filter, session)
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_UNSUBSCRIBED, client_id=session.client_id, topic=topic_filter
            )
        identity = identity_of(session)
        if identity is not None:
            # What the session still hears decides whether the device still hears its notices.
            recorded = self.hub.unsubscribed(identity, sorted(self._filters_of.get(session.client_id, ())))
            _, late = await asyncio.wait({recorded}, timeout=UNSUBSCRIBE_RECORD_SECONDS)
            if late:
                log.warning("device %s: its unsubscription is not recorded yet; acknowledged", identity.device_id)
        await handler.mqtt_acknowledge_unsubscription(unsubscription.packet_id)

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        granted: int = await super().add_subscription(subscription, session)
        topic_filter = subscription[0]
        if granted != REFUSED:
            self._filters_of.setdefault(session.client_id, set()).add(topic_filter)
            if "+" in topic_filter or "#" in topic_filter:
                self._wildcard_filters.add(topic_filter)
        return granted

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        deleted: int = super()._del_subscription(a_filter, session)
        if deleted:
            filters = self._filters_of.get(session.client_id)
            if filters is not None and not any(
                s.client_id == session.client_id for s, _ in self._subscriptions.get(a_filter, ())
            ):
                filters.discard(a_filter)
                if not filters:
                    del self._filters_of[session.client_id]
        return deleted

    async def _del_all_subscriptions(self, session: Session) -> None:
        """Only the session's own filters (amqtt walks every filter of the broker at each disconnect)."""
        for topic_filter in list(self._filters_of.get(session.client_id, ())):
            self._del_subscription(topic_filter, session)
            if not self._subscriptions.get(topic_filter, True):
                del self._subscriptions[topic_filter]

    def _readers(self, topic: str, forced_qos: int | None) -> list[tuple[Session, int]]:
        """Each session whose filters match `topic` and whose device may read it, once, with the highest
        QoS among its matching filters (a wildcard filter never reaches beyond the device's own topics)."""
        chosen: dict[str, tuple[Session, int]] = {}
        for topic_filter in [topic, *self._wildcard_filters]:
            subscribers = self._subscriptions.get(topic_filter)
            if not subscribers:
                self._wildcard_filters.discard(topic_filter)  # unsubscribed or its session deleted
                continue
            if topic_filter != topic and not topic_matches(topic_filter, topic):
                continue
            for session, subscribed_qos in subscribers:
                qos = subscribed_qos if forced_qos is None else forced_qos
                known = chosen.get(session.client_id)
                if known is None or qos > known[1]:
                    chosen[session.client_id] = (session, qos)
        return [
            (session, qos)
            for session, qos in chosen.values()
            if (identity := identity_of(session)) is not None and may_read(identity, topic)
        ]

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[OutgoingApplicationMessage]]) -> None:
        broadcast = await self._broadcast_queue.get()
        topic, data, source = broadcast.get("topic"), broadcast.get("data"), broadcast.get("session")
        if not isinstance(topic, str) or not isinstance(data, bytes | bytearray):
            return
        if source is not None and not self._may_publish(source, topic):
            # Only a will gets here unchecked: it passes the same ACL as any publish.
            log.info("dropped a message on %s from a session not allowed to publish there", topic)
            return
        forced_qos = broadcast.get("qos")
        for session, qos in self._readers(topic, forced_qos if isinstance(forced_qos, int) else None):
            if session.transitions.state != "connected":
                if not session.clean_session and qos in (QOS_1, QOS_2):
                    await self._retain_broadcast_message(broadcast, qos, session)
                continue
            handler = self._get_handler(session)
            if handler is not None:
                running_tasks.append(asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, retain=False)))

    async def deliver(self, topic: str, data: bytes) -> None:
        """The server's own message, QoS 1, to each session that may read it: written at once on a
        connected session's socket (delivery.py), kept for a persistent session that is away."""
        for session, qos in self._readers(topic, QOS_1):
            handler = self._get_handler(session)
            if session.transitions.state == "connected" and handler is not None:
                send_at_least_once(handler, session, topic, data)
            elif not session.clean_session:
                await self._retain_broadcast_message({"session": None, "topic": topic, "data": data}, qos, session)

    @staticmethod
    def _may_publish(source: Any, topic: str) -> bool:
        identity = identity_of(source) if isinstance(source, Session) else None
        return identity is not None and may_publish(identity, topic)

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        if source_session is not None and topic_name is not None and not self._may_publish(source_session, topic_name):
            return  # a retained will outside the device's own topics
        await super().retain_message(source_session, topic_name, data, qos)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        """Retained messages for one of the session's filters, each one the device may read."""
        if not self._retained_messages:
            return
        topic_filter = subscription[0]
        identity = identity_of(session)
        handler = self._get_handler(session)
        granted = next(
            (qos for s, qos in self._subscriptions.get(topic_filter, ()) if s.client_id == session.client_id), None
        )
        # (amqtt also calls this at connect for every filter of every session: only the session's own count.)
        if identity is None or handler is None or granted is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if topic_matches(topic_filter, topic) and may_read(identity, topic):
                qos = granted if retained.qos is None else min(granted, retained.qos)
                tasks.append(asyncio.ensure_future(handler.mqtt_publish(topic, retained.data, qos, retain=True)))
        if tasks:
            await asyncio.wait(tasks)


class EmbeddedBroker:
    def __init__(
        self,
        listeners: Sequence[Listener],
        hub: DeviceHub,
        limits: ConnectionLimits | None = None,
        rates: RateLimits | None = None,
    ) -> None:
        config = broker_config(listeners, hub)
        self._broker = SkyliftBroker(config, hub, limits or ConnectionLimits(), rates or RateLimits())

    async def start(self) -> None:
        await self._broker.start()

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._broker.deliver(topic, payload)

    async def disconnect(self, device_id: int) -> None:
        """Drop a device's connection (its credentials were revoked)."""
        await self._broker.close_session(session_key_for(device_id))

    async def stop(self) -> None:
        await self._broker.shutdown()
