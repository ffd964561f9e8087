"""Skylift's own MQTT connection to the external broker (paho-mqtt, driven by the event loop).

The session is persistent (clean session off, a fixed client id per node) and every subscription is
QoS 1, so what devices publish while Skylift is down or restarting waits in the broker. A device
message is acknowledged to the broker only once Skylift has recorded it (`ack`, called by the events
processor), so a message the broker holds is never lost by a crash of Skylift. Skylift's own messages
count as sent once the broker has acknowledged them.

paho runs on the event loop through its socket callbacks (no network thread of its own), so a
message, its handling and its acknowledgement never wait for the interpreter to switch threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from skylift.devices.topics import EZTCLOUD_UP_KINDS, OTA_PREFIX, SYS_METHODS, UP_KINDS

log = logging.getLogger(__name__)

EVENTS_TOPIC = "$skylift/events"
CONTROL_TOPIC = "$CONTROL/skylift/v1"
CONNECT_TIMEOUT_SECONDS = 30.0
MAX_INFLIGHT = 1000  # Skylift's own messages on their way at once (notices to a fleet)


def uplink_filters() -> list[str]:
    """Every topic a device publishes on that Skylift handles, and the plugin's events."""
    ota = [f"{OTA_PREFIX}{kind}/{form}" for kind in sorted(UP_KINDS) for form in ("+", "+/+")]
    sys = [f"/sys/+/+/{method}" for method in sorted(SYS_METHODS)]
    eztcloud = [f"{kind}/+" for kind in sorted(EZTCLOUD_UP_KINDS)]
    return [EVENTS_TOPIC, *ota, *sys, *eztcloud]


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str
    password: str
    client_id: str
    tls: bool = False


class BrokerLink:
    def __init__(
        self, address: BrokerAddress, on_message: Callable[[Received], None], on_connected: Callable[[], None]
    ) -> None:
        self._address = address
        self._on_message = on_message
        self._on_connected = on_connected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_connect: asyncio.Future[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._loop_thread = 0
        self._writing: int | None = None  # the descriptor the loop watches for room to write, if any
        self._sent: dict[int, asyncio.Future[None]] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=address.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.username_pw_set(address.username, address.password)
        if address.tls:
            client.tls_set()
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(0)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.on_publish = self._published
        self._client = client

    async def start(self) -> None:
        """Connect; fails when the broker has not taken the connection within 30 seconds."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._first_connect = self._loop.create_future()
        client = self._client
        # paho may call these from the worker thread that (re)connects: they act on the loop's own turn.
        # By descriptor number: a closed socket has none left when its turn comes.
        client.on_socket_open = lambda _c, _u, sock: self._call(self._watch, sock.fileno())
        client.on_socket_close = lambda _c, _u, sock: self._call(self._unwatch, sock.fileno())
        client.on_socket_register_write = lambda _c, _u, sock: self._call(self._want_write, sock.fileno())
        client.on_socket_unregister_write = lambda _c, _u, sock: self._call(self._written, sock.fileno())
        self._keeper = asyncio.create_task(self._keep_connected(), name="external broker link")
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), CONNECT_TIMEOUT_SECONDS)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(
                f"the MQTT broker at {self._address.host}:{self._address.port} did not take Skylift's connection "
                f"within {CONNECT_TIMEOUT_SECONDS:.0f} s (is it running, with Skylift's plugin and password?)"
            ) from None

    async def _keep_connected(self) -> None:
        """Connect (again, after a loss: 1 s, then up to 10 s apart), and do paho's timed work every second."""
        loop = asyncio.get_running_loop()
        delay = 1.0
        connected_once = False
        while True:
            if self._client.loop_misc() == mqtt.MQTT_ERR_NO_CONN:
                try:
                    # The TCP connection and CONNECT are blocking calls: on a worker thread.
                    if connected_once:
                        await loop.run_in_executor(None, self._client.reconnect)
                    else:
                        await loop.run_in_executor(
                            None, self._client.connect, self._address.host, self._address.port, 30
                        )
                        connected_once = True
                    delay = 1.0
                except OSError as exc:
                    log.warning("cannot reach the MQTT broker (%s); trying again in %.0f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
            await asyncio.sleep(1.0)

    def _watch(self, fd: int) -> None:
        assert self._loop is not None
        self._loop.add_reader(fd, self._read)

    def _unwatch(self, fd: int) -> None:
        assert self._loop is not None
        self._written(fd)
        self._loop.remove_reader(fd)

    def _want_write(self, fd: int) -> None:
        assert self._loop is not None
        if self._writing != fd:  # paho asks at every packet it queues; the loop is told once
            self._writing = fd
            self._loop.add_writer(fd, self._client.loop_write)

    def _written(self, fd: int) -> None:
        assert self._loop is not None
        if self._writing == fd:
            self._writing = None
        self._loop.remove_writer(fd)

    def _read(self) -> None:
        self._client.loop_read(max_packets=100)

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        self._client.disconnect()
        self._client.loop_write()
        for future in self._sent.values():
            if not future.done():
                future.set_exception(ConnectionError("the link to the MQTT broker was closed"))

    async def publish(self, topic: str, payload: bytes) -> None:
        """Send QoS 1; done once the broker has acknowledged it (sent again after a reconnection)."""
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"the MQTT broker link refused a message ({mqtt.error_string(info.rc)})")
        # The acknowledgement is handed to this loop after this call returns: it finds the future.
        future = asyncio.get_running_loop().create_future()
        self._sent[info.mid] = future
        await future

    async def command(self, command: dict[str, Any]) -> None:
        """A command for the plugin (`$CONTROL/skylift/v1`)."""
        await self.publish(CONTROL_TOPIC, json.dumps(command, separators=(",", ":")).encode())

    def ack(self, message: Received) -> None:
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # paho calls these on the event loop (from loop_read), except during a (re)connection on a worker thread.

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(callback, *args)
        else:
            loop.call_soon_threadsafe(callback, *args)

    def _connected(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            log.warning("the MQTT broker refused Skylift's connection: %s", reason)
            return
        # Subscribed again at every connection (a broker restarted without persistence forgot them).
        client.subscribe([(topic_filter, 1) for topic_filter in uplink_filters()])
        self._call(self._now_connected)

    def _now_connected(self) -> None:
        log.info("connected to the MQTT broker at %s:%d", self._address.host, self._address.port)
        if self._first_connect is not None and not self._first_connect.done():
            self._first_connect.set_result(None)
        self._on_connected()

    def _disconnected(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        log.warning("the link to the MQTT broker was lost (%s); reconnecting", reason)

    def _message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._on_message(Received(message.topic, bytes(message.payload), message.mid, message.qos))

    def _published(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any) -> None:
        future = self._sent.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)
