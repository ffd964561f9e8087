"""Test helpers: a real Skylift server in a subprocess, and devices played with paho-mqtt."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import resource
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

T = TypeVar("T")


# Below Linux's ephemeral range (32768-60999): a port picked there is not taken meanwhile by the
# outgoing connections of clients on the same machine (benchmarks open thousands), as a port the
# kernel hands out for bind(0) can be before the server binds it.
_SERVER_PORTS = (20000, 32767)


def free_port() -> int:
    for _ in range(50):
        port = random.randint(*_SERVER_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll until `condition()` is truthy and return it; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Server:
    http_url: str
    mqtt_port: int
    admin_token: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    # The settings it runs with (SKYLIFT_*), for a command line that works on its data.
    settings: dict[str, str] = field(default_factory=dict)

    def api(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.http_url}/api/v1",
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=30,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True)
class Ports:
    """Fixed addresses, so that a restarted server is found where devices left it."""

    http: int = field(default_factory=free_port)
    mqtt: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))


@contextmanager
def running_server(
    data_dir: Path,
    ports: Ports | None = None,
    tls: ssl.SSLContext | None = None,
    open_files: int | None = None,
    generated_token: bool = False,
    log_name: str = "server",
    **env: str,
) -> Iterator[Server]:
    """Start `skylift serve` as a subprocess and wait for /healthz; stop it afterwards.

    With `tls` (the context that trusts the server's certificate) the HTTP port speaks HTTPS; with
    `open_files` the server runs under that descriptor limit (soft and hard); with `generated_token` the
    server makes its admin token itself and keeps it in the data dir, as on a first start. Its output goes
    to `<data dir>-<log_name>.log` beside the data dir (replicas sharing one data dir name their own)."""
    ports = ports or Ports()
    http_port, mqtt_port, token = ports.http, ports.mqtt, ports.token
    environment = {
        **os.environ,
        "SKYLIFT_DATA_DIR": str(data_dir),
        "SKYLIFT_HTTP_HOST": "127.0.0.1",
        "SKYLIFT_HTTP_PORT": str(http_port),
        "SKYLIFT_MQTT_HOST": "127.0.0.1",
        "SKYLIFT_MQTT_PORT": str(mqtt_port),
        "SKYLIFT_ADMIN_TOKEN": token,
        **env,
    }
    database_url = database_url_for(data_dir)
    if database_url is not None and "SKYLIFT_DATABASE_URL" not in env:
        environment["SKYLIFT_DATABASE_URL"] = database_url
    if generated_token:
        del environment["SKYLIFT_ADMIN_TOKEN"]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-{log_name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "skylift.cli", "serve"],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else partial(_limit_open_files, open_files),
        )
    scheme = "https" if tls is not None else "http"
    settings = {name: value for name, value in environment.items() if name.startswith("SKYLIFT_")}
    server = Server(f"{scheme}://127.0.0.1:{http_port}", mqtt_port, token, data_dir, process, log_path, settings)
    try:
        wait_until(lambda: _healthy(server, tls), timeout=90, what="the server to become healthy")
        if generated_token:
            server.admin_token = (data_dir / "admin-token").read_text().strip()
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# `SKYLIFT_TEST_DATABASE_URL=postgresql+asyncpg://user@host:port` runs every test server on that
# PostgreSQL server instead of SQLite: each data dir gets a new database of its own (the same one when
# a test restarts its server on the same data).
TEST_DATABASE_URL = os.environ.get("SKYLIFT_TEST_DATABASE_URL")


def database_url_for(data_dir: Path) -> str | None:
    if not TEST_DATABASE_URL:
        return None
    # Named beside the data dir, so that a server restarted on the same data finds the same database.
    named = data_dir.parent / f"{data_dir.name}-database"
    if not named.exists():
        named.parent.mkdir(parents=True, exist_ok=True)
        named.write_text(f"skylift_test_{uuid.uuid4().hex[:16]}")
    name = named.read_text().strip()
    server = TEST_DATABASE_URL.rstrip("/")

    async def create(connection: Any) -> None:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')

    _on_postgresql(f"{server}/postgres", create)
    return f"{server}/{name}"


def _on_postgresql(url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work` with a connection to the PostgreSQL database at `url` (an SQLAlchemy asyncpg URL)."""
    import asyncio

    import asyncpg

    async def run() -> T:
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def database_rows(data_dir: Path, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of a query (`?` placeholders) run on the database of the server kept in `data_dir`."""
    if not TEST_DATABASE_URL:
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(data_dir / "skylift.db")) as db:
            return list(db.execute(query, params))
    url = database_url_for(data_dir)
    assert url is not None
    numbered = query.split("?")
    statement = numbered[0] + "".join(f"${n}{part}" for n, part in enumerate(numbered[1:], start=1))

    async def fetch(connection: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await connection.fetch(statement, *params)]

    return _on_postgresql(url, fetch)


def _limit_open_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def _healthy(server: Server, tls: ssl.SSLContext | None) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"server exited with {server.process.returncode}:\n{server.log()}")
    try:
        return httpx.get(f"{server.http_url}/healthz", timeout=2, verify=tls or True).status_code == 200
    except httpx.HTTPError:
        return False


def all_items(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged list, page after page."""
    items: list[dict[str, Any]] = []
    while True:
        response = api.get(path, params={**params, "limit": 1000, "offset": len(items)})
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items


@dataclass
class Fleet:
    """A product with its devices and packages, created through the management API."""

    api: httpx.Client
    product: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, api: httpx.Client, **product: Any) -> Fleet:
        response = api.post("/products", json={"name": unique("product"), **product})
        assert response.status_code == 201, response.text
        return cls(api=api, product=response.json())

    @property
    def product_id(self) -> int:
        return int(self.product["id"])

    @property
    def product_key(self) -> str:
        return str(self.product["product_key"])

    def device(self, name: str | None = None) -> dict[str, Any]:
        response = self.api.post("/devices", json={"product_id": self.product_id, "name": name or unique("dev")})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def module(self, name: str) -> dict[str, Any]:
        response = self.api.post("/modules", json={"product_id": self.product_id, "name": name})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def upload(self, content: bytes, version: str, filename: str = "firmware.bin", **fields: Any) -> httpx.Response:
        data = {"product_id": str(self.product_id), "name": f"fw {version}", "version": version, **fields}
        return self.api.post("/packages", data=data, files={"file": (filename, content, "application/octet-stream")})

    def package(self, content: bytes, version: str, **fields: Any) -> dict[str, Any]:
        response = self.upload(content, version, **fields)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def campaign(self, package_id: int, **fields: Any) -> dict[str, Any]:
        response = self.api.post("/campaigns", json={"name": unique("campaign"), "package_id": package_id, **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def attempts(self, campaign_id: int) -> dict[int, dict[str, Any]]:
        return {item["device_id"]: item for item in all_items(self.api, f"/campaigns/{campaign_id}/devices")}

    def wait_state(self, campaign_id: int, device_id: int, state: str, timeout: float = 10) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            attempt = self.attempts(campaign_id)[device_id]
            return attempt if attempt["state"] == state else None

        return wait_until(reached, timeout=timeout, what=f"device {device_id} to be {state}")


class SimDevice:
    """A device played with paho-mqtt, speaking the seeds' payloads verbatim."""

    def __init__(
        self,
        server: Server,
        username: str,
        password: str | None,
        topic_id: str,
        client_id: str | None = None,
    ) -> None:
        self.server = server
        self.topic_id = topic_id
        self.device_id: int | None = None  # the registered device it plays, when made from one
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.connected = False
        self.notices: list[dict[str, Any]] = []
        # When set, the device answers every notice with this progress step (100 = success, -1 = failure).
        self.auto_step: int | None = None
        # With auto_step 100: then also report the notice's version, as a product-key device does after flashing.
        self.auto_inform = False
        self._subscriptions: list[str] = []
        self._suback: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or unique("client"))
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self._suback.put(list(codes))

    @classmethod
    def token(cls, server: Server, device: dict[str, Any], **kwargs: Any) -> SimDevice:
        sim = cls(server, device["access_token"], None, device["access_token"], **kwargs)
        sim.device_id = device.get("id")
        return sim

    @classmethod
    def product_key(cls, server: Server, device: dict[str, Any], password: str | None = None, **kw: Any) -> SimDevice:
        username = f"{device['name']}&{device['product_key']}"
        topic_id = f"{device['product_key']}/{device['name']}"
        sim = cls(server, username, password or device["device_secret"], topic_id, **kw)
        sim.device_id = device.get("id")
        return sim

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        # `connected` first: `connect()` waits for `connack` on another thread, then reads `connected`.
        self.connected = not reason.is_failure
        self.connack = reason
        if self.connected:
            # paho reconnects by itself after a server restart; a clean session must subscribe again.
            for topic in self._subscriptions:
                self.client.subscribe(topic, qos=1)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == f"/ota/device/upgrade/{self.topic_id}":
            self.notices.append(json.loads(message.payload))
            if self.auto_step is not None:
                body = json.dumps({"step": str(self.auto_step), "desc": "auto"}).encode()
                self.client.publish(f"/ota/device/progress/{self.topic_id}", body, qos=1)
                if self.auto_inform and self.auto_step == 100:
                    notice = self.notices[-1]
                    version = (notice.get("params") or notice.get("data") or {})["version"]
                    report = json.dumps({"id": "1", "params": {"version": version}}).encode()
                    self.client.publish(f"/ota/device/inform/{self.topic_id}", report, qos=1)
                return
        self.messages.put((message.topic, message.payload))

    def _on_disconnect(self, *_args: Any) -> None:
        self.connected = False

    def connect(self, subscribe: bool = True) -> SimDevice:
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", self.server.mqtt_port, keepalive=30)
        self.client.loop_start()
        # Generous: a slow machine (or the shifted-date run) accepts a burst of connections slowly.
        wait_until(lambda: self.connack is not None, timeout=30, what="CONNACK")
        if self.connected and subscribe:
            codes = self.subscribe(f"/ota/device/upgrade/{self.topic_id}")
            assert not codes[0].is_failure, codes
        return self

    def try_connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.server.mqtt_port, keepalive=30)
        self.client.loop_start()
        return wait_until(lambda: self.connack, timeout=30, what="CONNACK")

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self._subscriptions.append(topic)
        self.client.subscribe(topic, qos=1)
        return self._suback.get(timeout=10)

    def publish(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, body, qos=1)
        info.wait_for_publish(timeout=10)

    def inform(self, version: str, module: str | None = None) -> None:
        params: dict[str, Any] = {"version": version}
        if module is not None:
            params["module"] = module
        self.publish(f"/ota/device/inform/{self.topic_id}", {"id": "147258369", "params": params})

    def progress_002(self, step: int, desc: str = "", module: str | None = None) -> None:
        body: dict[str, Any] = {"step": str(step), "desc": desc}
        if module is not None:
            body["module"] = module
        self.publish(f"/ota/device/progress/{self.topic_id}", body)

    def progress_004(self, step: int, desc: str = "") -> None:
        self.publish(f"/ota/device/progress/{self.topic_id}", {"id": 1, "params": {"step": str(step), "desc": desc}})

    def next_message(self, timeout: float = 10) -> tuple[str, dict[str, Any]]:
        topic, payload = self.messages.get(timeout=timeout)
        return topic, json.loads(payload)

    def notice(self, timeout: float = 10) -> dict[str, Any]:
        topic, body = self.next_message(timeout)
        assert topic == f"/ota/device/upgrade/{self.topic_id}", topic
        return body

    def no_message(self, within: float = 1.0) -> bool:
        try:
            self.messages.get(timeout=within)
        except queue.Empty:
            return True
        return False

    def disconnect(self) -> None:
        self.client.disconnect()
        try:
            self.client.loop_stop()
        except AttributeError:
            pass  # paho: the loop thread ended by itself between loop_stop's check and its join


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def firmware(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes, so every test file differs from the others."""
    block = hashlib.sha256(f"firmware-{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def read_paths(product_id: int, device_id: int, package_id: int, campaign_id: int) -> list[str]:
    """Every read the API offers (under /api/v1) on a product with a device, a package and a campaign,
    credentials and users aside: those two are for admins only."""
    return [
        "/products",
        f"/products/{product_id}",
        f"/products/{product_id}/versions",
        "/devices",
        f"/devices/{device_id}",
        "/packages",
        f"/packages/{package_id}",
        f"/packages/{package_id}/results",
        "/campaigns",
        f"/campaigns/{campaign_id}",
        f"/campaigns/{campaign_id}/devices",
        f"/campaigns/{campaign_id}/results",
        "/settings",
        "/audit",
    ]
