"""Many paho-mqtt clients driven from one thread: epoll plus paho's loop_read/loop_write/loop_misc.

One OS thread per client does not scale to thousands of simulated devices; one selector loop does.
Every paho call for a swarm's clients happens on its thread; other threads hand work over with
`call()`. A subclass says how a peer logs in (`make_client`) and what its callbacks do.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from upload_download import BenchError

# No keep-alive: a ping sent a second late by a busy bench thread would have the broker drop the client.
KEEPALIVE_S = 0
CONNECT_WINDOW = 32  # per swarm: connections still waiting to settle (CONNACK, SUBACK, first PUBACK)


@dataclass(kw_only=True)
class Peer:
    """The connection state of one client; subclasses add what the benchmark records."""

    client: mqtt.Client | None = None
    fd: int = -1
    events: int = 0
    settled: bool = False  # ready for the benchmark (or failed trying)
    error: str | None = None

    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason


P = TypeVar("P", bound=Peer)


class Swarm(ABC, Generic[P]):
    def __init__(self, name: str, peers: Sequence[P], port: int) -> None:
        self.name = name
        self.peers = list(peers)
        self._port = port
        self._selector = selectors.DefaultSelector()
        self._commands: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._live: dict[int, P] = {}
        self._to_connect = deque(self.peers)
        self._connecting = 0
        self.crash: BaseException | None = None

    # -- what a subclass provides (on the swarm's thread)

    @abstractmethod
    def make_client(self, peer: P) -> mqtt.Client:
        """A new client for `peer` (client id and login); the swarm wires the callbacks."""

    def on_connect(self, client: mqtt.Client, peer: P) -> None:
        self.settle(peer)

    def on_subscribe(self, client: mqtt.Client, peer: P) -> None:
        self.settle(peer)

    def on_message(self, peer: P, message: mqtt.MQTTMessage) -> None:
        pass

    def on_publish(self, peer: P, mid: int) -> None:
        pass

    # -- control, from any thread

    def start(self) -> None:
        self._thread.start()

    def call(self, work: Callable[[], None]) -> None:
        self._commands.append(work)
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or already closed
            self._wake_w.send(b"\0")

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._thread.join(timeout=15)
        if self._thread.is_alive():
            raise BenchError(f"MQTT thread {self.name} did not stop within 15 s")

    def raise_if_failed(self) -> None:
        if self.crash is not None:
            raise BenchError(f"MQTT thread {self.name} crashed: {self.crash!r}") from self.crash

    def is_live(self, peer: P) -> bool:
        return peer.fd in self._live

    def settle(self, peer: P) -> None:
        if not peer.settled:
            peer.settled = True
            self._connecting -= 1

    # -- the loop

    def _run(self) -> None:
        try:
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            next_misc = time.monotonic() + 1.0
            while not self._stop.is_set():
                self._start_connections()
                while self._commands:
                    self._commands.popleft()()
                self._update_interest()
                for key, mask in self._selector.select(timeout=0.1):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                    elif key.data.fd in self._live:
                        self._service(key.data, mask)
                if time.monotonic() >= next_misc:
                    next_misc = time.monotonic() + 1.0
                    for peer in list(self._live.values()):
                        assert peer.client is not None
                        peer.client.loop_misc()  # keepalive pings
                        self._check_alive(peer)
        except BaseException as exc:  # reported by raise_if_failed
            self.crash = exc
        finally:
            self._shutdown()

    def _start_connections(self) -> None:
        while self._to_connect and self._connecting < CONNECT_WINDOW:
            peer = self._to_connect.popleft()
            client = self.make_client(peer)
            client.user_data_set(peer)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            client.on_publish = self._on_publish
            peer.client = client
            try:
                client.connect("127.0.0.1", self._port, keepalive=KEEPALIVE_S)
            except OSError as exc:
                peer.fail(f"MQTT connect: {exc}")
                peer.settled = True
                continue
            sock = client.socket()
            if sock is None:
                peer.fail("MQTT connect: no socket")
                peer.settled = True
                continue
            peer.fd = sock.fileno()
            peer.events = selectors.EVENT_READ
            self._selector.register(peer.fd, peer.events, peer)
            self._live[peer.fd] = peer
            self._connecting += 1

    def _update_interest(self) -> None:
        for peer in list(self._live.values()):
            assert peer.client is not None
            if not self._check_alive(peer):
                continue
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.client.want_write() else 0)
            if wanted != peer.events:
                self._selector.modify(peer.fd, wanted, peer)
                peer.events = wanted

    def _service(self, peer: P, mask: int) -> None:
        client = peer.client
        assert client is not None
        if mask & selectors.EVENT_READ:
            rc = client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._drop(peer, f"MQTT read failed: {mqtt.error_string(rc)}")
                return
        if mask & selectors.EVENT_WRITE and client.socket() is not None:
            rc = client.loop_write()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._drop(peer, f"MQTT write failed: {mqtt.error_string(rc)}")
                return
        self._check_alive(peer)

    def _check_alive(self, peer: P) -> bool:
        assert peer.client is not None
        if peer.client.socket() is None:
            self._drop(peer, "MQTT connection closed by the server")
            return False
        return True

    def _drop(self, peer: P, reason: str) -> None:
        if self._live.pop(peer.fd, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(peer.fd)
        if not self._stop.is_set():
            peer.fail(reason)
            self.settle(peer)

    def _shutdown(self) -> None:
        for peer in list(self._live.values()):
            assert peer.client is not None
            with contextlib.suppress(Exception):
                peer.client.disconnect()  # outside a callback paho writes the DISCONNECT at once
            sock = peer.client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._live.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- paho callbacks (on this thread, inside loop_read/loop_write)

    def _on_connect(self, client: mqtt.Client, peer: P, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            peer.fail(f"CONNACK refused: {reason}")
            self.settle(peer)
            return
        self.on_connect(client, peer)

    def _on_subscribe(self, client: mqtt.Client, peer: P, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        if any(code.is_failure for code in codes):
            peer.fail(f"SUBACK refused: {codes}")
            self.settle(peer)
            return
        self.on_subscribe(client, peer)

    def _on_message(self, _client: mqtt.Client, peer: P, message: mqtt.MQTTMessage) -> None:
        self.on_message(peer, message)

    def _on_publish(self, _client: mqtt.Client, peer: P, mid: int, _reason: Any, _p: Any) -> None:
        self.on_publish(peer, mid)


def new_client(client_id: str, username: str | None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if username is not None:
        client.username_pw_set(username, None)
    return client
