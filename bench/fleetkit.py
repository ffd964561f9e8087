"""What the fleet benchmarks share: a server sized for a fleet, devices registered in bulk, token devices on
paho swarms, a bare amqtt broker as the reference, and the server's CPU time and memory from /proc.

The benchmarks run client and server on the same machine; every figure that depends on the machine is
printed next to a reference measured in the same run (a bare broker, nginx, a hash loop), and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from swarm import Peer, Swarm, new_client
from upload_download import BenchError, Server, check, free_ports, start_server, stop_server, wait_healthy

CLK_TCK = os.sysconf("SC_CLK_TCK")
API_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
IMPORT_CHUNK = 5_000  # devices per POST /devices/import
OLD_VERSION = "1.0.0"
NEW_VERSION = "2.0.0"
# A fleet connects from one address: the per-address cap (1000 by default) would refuse most of it.
FLEET_ENV = {
    "SKYLIFT_MQTT_MAX_CONNECTIONS_PER_ADDRESS": "200000",
    "SKYLIFT_MQTT_MAX_PENDING_CONNECTIONS": "4096",
}


def raise_open_files() -> int:
    """This process (and the servers it starts) may open as many descriptors as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def parse_fleets(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


# ---------------------------------------------------------------- the server's resources


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state); utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def database_cpu_seconds() -> float:
    """utime + stime of every PostgreSQL process on this machine (a loopback server's backends do the
    database's share of the work; 0 when there is none)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(entry.name)
        except OSError:
            continue  # it ended meanwhile
    return total


def rss_kib(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no VmRSS")


def metric_sum(text: str, name: str) -> float:
    """The sum over labels of one metric in Prometheus text format (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def fleet_parser(doc: str | None, fleets: str, fleets_help: str) -> argparse.ArgumentParser:
    """The options the fleet benchmarks share: the fleets, a time limit per wait, and leaving the reference out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleets", default=fleets, help=fleets_help)
    parser.add_argument("--timeout", type=float, default=900, help="seconds each wait may take")
    parser.add_argument("--skip-reference", action="store_true", help="do not measure the bare amqtt broker")
    return parser


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="run Skylift on this PostgreSQL server (postgresql+asyncpg://user@host:port), in a new database"
        " for each run, dropped afterwards; SQLite in the data dir otherwise",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="run this many Skylift replicas on the one PostgreSQL database (needs --postgresql), the devices"
        " spread evenly over them; CPU figures add all of them up",
    )
    parser.add_argument(
        "--broker",
        choices=["embedded", "mosquitto"],
        default="embedded",
        help="where devices connect: Skylift's embedded broker, or Debian's Mosquitto with Skylift's plugin"
        " (built and started here); CPU figures then add Mosquitto's",
    )


def database_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed arguments, with --replicas checked against --postgresql and --broker."""
    args = parser.parse_args()
    if args.replicas < 1 or (args.replicas > 1 and args.postgresql is None):
        parser.error("--replicas takes a count of 1 or more, and more than 1 needs --postgresql")
    if args.replicas > 1 and args.broker != "embedded":
        parser.error("--replicas needs the embedded broker (one Skylift process per external broker)")
    return args


def server_pids(servers: Sequence[Server]) -> list[int]:
    """The processes whose CPU a run counts: every Skylift, and the external broker when there is one."""
    return [server.process.pid for server in servers] + [s.broker_pid for s in servers if s.broker_pid is not None]


@contextlib.contextmanager
def database_settings(postgresql: str | None) -> Iterator[dict[str, str]]:
    """The database setting of one run: none (SQLite), or a new PostgreSQL database, dropped afterwards."""
    if postgresql is None:
        yield {}
        return
    import asyncio
    import secrets

    import asyncpg

    server = postgresql.rstrip("/")
    name = f"skylift_bench_{secrets.token_hex(6)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(server.replace("+asyncpg", "") + "/postgres")
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield {"SKYLIFT_DATABASE_URL": f"{server}/{name}"}
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def skylift_in_tempdir(prefix: str) -> Iterator[Server]:
    """A server in a throwaway folder; on a failure inside, its log tail is printed; both go away after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = start_server(root)
    try:
        wait_healthy(server)
        yield server
    except Exception:
        print(f"--- server log tail ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        stop_server(server)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_skylift(root: Path, extra_env: dict[str, str] | None = None, broker: str = "embedded") -> Iterator[Server]:
    """Skylift with its embedded broker, or (`broker="mosquitto"`) with Debian's Mosquitto and Skylift's
    plugin, started here on a free loopback port: the devices then connect to Mosquitto."""
    if broker == "mosquitto":
        with running_mosquitto(root) as (mosquitto, http_port, settings):
            server = start_server(
                root, {**FLEET_ENV, **(extra_env or {}), **settings, "SKYLIFT_HTTP_PORT": str(http_port)}
            )
            server.base_url = f"http://127.0.0.1:{http_port}"  # the port Mosquitto's plugin asks
            server.mqtt_port, server.broker_pid = mosquitto[0], mosquitto[1].pid
            try:
                wait_healthy(server)
                yield server
            finally:
                stop_server(server)
        return
    server = start_server(root, {**FLEET_ENV, **(extra_env or {})})
    try:
        wait_healthy(server)
        yield server
    finally:
        stop_server(server)


MOSQUITTO_PASSWORD = "bench-service-password-0123456789"


@contextlib.contextmanager
def running_mosquitto(root: Path) -> Iterator[tuple[tuple[int, subprocess.Popen[bytes]], int, dict[str, str]]]:
    """Mosquitto with Skylift's plugin (built here); ((its port, its process), Skylift's HTTP port to use,
    Skylift's settings for it)."""
    from skylift.broker.mosquitto import plugin

    folder = root / "mosquitto"
    folder.mkdir(parents=True, exist_ok=True)
    built = plugin.build(folder / "skylift_plugin.so")
    port, http_port = free_ports(2)
    login = f"http://127.0.0.1:{http_port}/broker/v1/login"
    lines = [
        f"listener {port} 127.0.0.1",
        *plugin.config_lines(built, login, "skylift", MOSQUITTO_PASSWORD),
        "max_connections -1",
        f"persistence_location {folder}/",
        f"log_dest file {folder / 'mosquitto.log'}",
        f"user {getpass.getuser()}",
    ]
    settings = {
        "SKYLIFT_MQTT_BROKER_URL": f"mqtt://127.0.0.1:{port}",
        "SKYLIFT_MQTT_BROKER_PASSWORD": MOSQUITTO_PASSWORD,
    }
    with mosquitto_process(folder, port, lines) as process:
        yield (port, process), http_port, settings


@contextlib.contextmanager
def mosquitto_process(folder: Path, port: int, lines: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """Debian's Mosquitto with this configuration, once it listens on `port`; stopped afterwards."""
    (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    command = [executable, "-c", str(folder / "mosquitto.conf")]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("Mosquitto to listen", 15, lambda: _accepts(port), 0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def running_replicas(
    root: Path, count: int, extra_env: dict[str, str] | None = None, broker: str = "embedded"
) -> Iterator[list[Server]]:
    """`count` replicas of `skylift serve` on one data dir (and the database in `extra_env`), each with its
    own ports, log and SKYLIFT_NODE; one is a plain `running_skylift` (on `broker`)."""
    if count == 1:
        with running_skylift(root, extra_env, broker) as server:
            yield [server]
        return
    shared = {**FLEET_ENV, **(extra_env or {}), "SKYLIFT_DATA_DIR": str(root / "data")}
    servers: list[Server] = []
    try:
        for index in range(count):
            (root / f"replica-{index}").mkdir(parents=True, exist_ok=True)
            servers.append(start_server(root / f"replica-{index}", {**shared, "SKYLIFT_NODE": f"replica-{index}"}))
        for server in servers:
            wait_healthy(server)
        yield servers
    finally:
        for server in servers:
            stop_server(server)


def api_client(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.base_url}/api/v1", headers={"Authorization": f"Bearer {server.token}"}, timeout=API_TIMEOUT
    )


def metrics_of(server: Server, name: str) -> float:
    return metric_sum(httpx.get(f"{server.base_url}/metrics", timeout=30).text, name)


def register_fleet(api: httpx.Client, count: int, name: str) -> tuple[int, list[str]]:
    """A product and `count` token devices registered in bulk; returns the product id and the access tokens."""
    product = check(api.post("/products", json={"name": name}), 201, "POST /products").json()
    tokens: list[str] = []
    for start in range(0, count, IMPORT_CHUNK):
        rows = [{"name": f"d-{index:06d}"} for index in range(start, min(count, start + IMPORT_CHUNK))]
        response = api.post(
            "/devices/import",
            params={"product_id": product["id"]},
            content=json.dumps(rows),
            headers={"Content-Type": "application/json"},
        )
        tokens += [str(item["access_token"]) for item in check(response, 201, "POST /devices/import").json()["items"]]
    return int(product["id"]), tokens


def upload_small_package(api: httpx.Client, product_id: int, size: int = 4096) -> int:
    data = {"product_id": str(product_id), "name": "bench", "version": NEW_VERSION, "sign_method": "MD5"}
    files = {"file": ("firmware.bin", os.urandom(size), "application/octet-stream")}
    return int(check(api.post("/packages", data=data, files=files), 201, "POST /packages").json()["id"])


def wait_until(what: str, timeout: float, condition: Callable[[], bool], interval: float = 0.05) -> float:
    """Seconds until `condition()` held; BenchError after `timeout`."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter() - started


# ---------------------------------------------------------------- devices on paho swarms


@dataclass(kw_only=True)
class Device(Peer):
    """A token device (or, without a token, an anonymous client of a bare broker) and what happened to it."""

    key: str  # the access token, or the bare broker's client id: the `{id}` of its topics
    token: str | None
    inform: bool = False  # report version 1.0.0 once subscribed (settled on its PUBACK)
    on_notice: str | None = None  # answer a notice with this step (token devices succeed at "100")
    topic_filter: str | None = None  # subscribed to this instead of its upgrade topic
    subscribe_qos: int = 1
    inflight: int = 20  # QoS 1 messages in flight (paho's default); a sender that stands for a server sets more
    ready_at: float = 0.0
    notices: int = 0
    notice_at: float = 0.0
    acked: int = 0
    last_ack_at: float = 0.0
    received: list[bytes] = field(default_factory=list)

    @property
    def upgrade_topic(self) -> str:
        return f"/ota/device/upgrade/{self.key}"


class Devices(Swarm[Device]):
    """Devices that connect, subscribe to their upgrade topic and, if asked, report their version."""

    def make_client(self, peer: Device) -> mqtt.Client:
        client = new_client(f"c-{peer.key[:16]}-{id(peer)}", peer.token)
        client.max_inflight_messages_set(peer.inflight)
        return client

    def on_connect(self, client: mqtt.Client, peer: Device) -> None:
        client.subscribe(peer.topic_filter or peer.upgrade_topic, qos=peer.subscribe_qos)

    def on_subscribe(self, client: mqtt.Client, peer: Device) -> None:
        if peer.inform:
            body = {"id": "1", "params": {"version": OLD_VERSION}}
            client.publish(f"/ota/device/inform/{peer.key}", json.dumps(body).encode(), qos=1)
        else:
            peer.ready_at = time.perf_counter()
            self.settle(peer)

    def on_publish(self, peer: Device, mid: int) -> None:
        peer.acked += 1
        peer.last_ack_at = time.perf_counter()
        if not peer.settled:
            peer.ready_at = peer.last_ack_at
            self.settle(peer)

    def on_message(self, peer: Device, message: mqtt.MQTTMessage) -> None:
        peer.notices += 1
        if peer.notices == 1:
            peer.notice_at = time.perf_counter()
            if peer.on_notice is not None and peer.client is not None:
                body = {"step": peer.on_notice, "desc": "done"}
                peer.client.publish(f"/ota/device/progress/{peer.key}", json.dumps(body).encode(), qos=1)


class Fleet:
    """Devices spread over `threads` swarms (one paho thread each)."""

    def __init__(
        self, devices: Sequence[Device], port: int | Sequence[int], threads: int = 2, name: str = "fleet"
    ) -> None:
        """With several ports (replicas), swarm n connects to port n modulo their number."""
        ports = [port] if isinstance(port, int) else list(port)
        threads = max(threads, len(ports))
        self.devices = list(devices)
        self.swarms = [Devices(f"{name}-{n}", self.devices[n::threads], ports[n % len(ports)]) for n in range(threads)]

    def __enter__(self) -> Fleet:
        for swarm in self.swarms:
            swarm.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for swarm in self.swarms:
            with contextlib.suppress(BenchError):
                swarm.stop()

    def raise_if_failed(self) -> None:
        for swarm in self.swarms:
            swarm.raise_if_failed()
        failed = [device for device in self.devices if device.error is not None]
        if failed:
            raise BenchError(f"{len(failed)} device(s) failed; first ({failed[0].key[:12]}): {failed[0].error}")

    def wait(self, what: str, timeout: float, condition: Callable[[Device], bool]) -> float:
        def done() -> bool:
            self.raise_if_failed()
            return all(condition(device) for device in self.devices)

        return wait_until(what, timeout, done, interval=0.02)

    def ready(self, timeout: float) -> float:
        return self.wait("every device to connect", timeout, lambda device: device.settled)

    def publish_all(self, topic_of: Callable[[Device], str], bodies: Sequence[bytes]) -> None:
        """Every device publishes the bodies (QoS 1), in order; paho sends them as its window allows."""
        for swarm in self.swarms:

            def publish(swarm: Devices = swarm) -> None:
                for body in bodies:
                    for peer in swarm.peers:
                        if peer.client is not None:
                            peer.client.publish(topic_of(peer), body, qos=1)

            swarm.call(publish)


def token_devices(tokens: Sequence[str], **options: Any) -> list[Device]:
    return [Device(key=token, token=token, **options) for token in tokens]


def anonymous_devices(count: int, **options: Any) -> list[Device]:
    return [Device(key=f"bare-{index:06d}", token=None, **options) for index in range(count)]


# ---------------------------------------------------------------- reference: a bare amqtt broker

BARE_BROKER = textwrap.dedent(
    """
    import asyncio, logging, sys
    from amqtt.broker import Broker

    async def main():
        logging.basicConfig(level=logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{sys.argv[1]}", "max_connections": -1}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@dataclass
class BareBroker:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def bare_amqtt() -> Iterator[BareBroker]:
    """The amqtt broker Skylift embeds, alone: no plugins but anonymous login, in its own process."""
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-c", BARE_BROKER, str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise BenchError("the bare amqtt broker did not start")
        yield BareBroker(process, port)
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def bare_mosquitto() -> Iterator[BareBroker]:
    """Debian's Mosquitto alone: anonymous logins, no plugin, no persistence, in its own process."""
    (port,) = free_ports(1)
    folder = Path(tempfile.mkdtemp(prefix="bare-mosquitto-"))
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "max_connections -1", "max_queued_messages 0"]
    try:
        with mosquitto_process(folder, port, lines) as process:
            yield BareBroker(process, port)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bare_broker(kind: str) -> contextlib.AbstractContextManager[BareBroker]:
    """The reference broker of a run: the one the devices use, alone (amqtt for the embedded broker)."""
    return bare_mosquitto() if kind == "mosquitto" else bare_amqtt()


# ---------------------------------------------------------------- output


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n== {title}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    sys.stdout.flush()


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference > 0 else "n/a"


def run(main: Callable[[], int]) -> None:
    """Run a benchmark's `main` and exit with its status. A failure of the server, the network or the
    benchmark's own checks is one line on standard error and status 1."""
    try:
        status = main()
    except (BenchError, httpx.HTTPError, OSError) as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    sys.exit(status)
