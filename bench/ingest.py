"""Device message intake benchmark: progress reports applied per second from many MQTT devices.

Starts the real `skylift serve` (upload_download.py's helpers) with a throwaway data dir, registers a
product and `--devices` token devices, connects them with paho-mqtt (subscribed to their upgrade topic,
reporting version 1.0.0), and starts a campaign so that every device holds an attempt that progress
reports move. Then every device sends `--messages` QoS 1 progress reports at once (paho keeps its
in-flight window of 20 full) and the clock runs until every report has been applied: each attempt's
`step_desc` names its device's last report (and, when the server exports it, the applied-messages
counter at /metrics reaches the total).

As a reference, in the same run, a bare amqtt broker (no Skylift, started by this script in its own
process) relays the same message mix from as many devices to one subscriber.

    python bench/ingest.py                       # 200 devices x 50 reports
    python bench/ingest.py --devices 50 --messages 20 --skip-relay
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from swarm import Peer, Swarm, new_client
from upload_download import BenchError, Server, check, free_ports, report_failure, start_server, wait_healthy

OLD_VERSION = "1.0.0"
# The list API's largest page: one page holds every device of a run.
MAX_PAGE = 1000
NEW_VERSION = "2.0.0"
POLL_INTERVAL_S = 0.25
API_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
APPLIED_METRIC = "skylift_device_messages_applied_total"


# ---------------------------------------------------------------- the clients


@dataclass
class Client(Peer):
    """One MQTT client of the benchmark and what happened to it; settled once connected (and subscribed)."""

    username: str | None
    client_id: str
    subscribe: str | None = None
    acked: int = 0  # PUBACKs of its own publishes
    received: int = 0  # messages delivered to it
    last_ack_at: float = 0.0
    notice: dict[str, Any] | None = None


class Clients(Swarm[Client]):
    def make_client(self, peer: Client) -> mqtt.Client:
        return new_client(peer.client_id, peer.username)

    def on_connect(self, client: mqtt.Client, peer: Client) -> None:
        if peer.subscribe is None:
            self.settle(peer)
        else:
            client.subscribe(peer.subscribe, qos=0 if peer.username is None else 1)

    def on_message(self, peer: Client, message: mqtt.MQTTMessage) -> None:
        peer.received += 1
        if peer.username is not None and peer.notice is None:
            peer.notice = json.loads(message.payload)

    def on_publish(self, peer: Client, mid: int) -> None:
        peer.acked += 1
        peer.last_ack_at = time.perf_counter()

    def raise_if_failed(self) -> None:
        super().raise_if_failed()
        failed = [peer for peer in self.peers if peer.error is not None]
        if failed:
            raise BenchError(f"{len(failed)} client(s) failed; first ({failed[0].client_id}): {failed[0].error}")

    def all_ready(self) -> bool:
        self.raise_if_failed()
        return all(peer.settled for peer in self.peers)


# ---------------------------------------------------------------- the message mix


def progress_body(index: int) -> bytes:
    """The `index`-th progress report of a device: steps 1..99 over and over, the index in `desc`."""
    return json.dumps({"step": str(1 + index % 99), "desc": f"m{index}"}).encode()


def send_all(swarm: Clients, senders: Sequence[Client], topic_of: Callable[[Client], str], count: int) -> None:
    """Every sender publishes `count` QoS 1 reports now; paho sends them as its in-flight window allows."""

    def publish() -> None:
        for index in range(count):
            for peer in senders:
                assert peer.client is not None
                info = peer.client.publish(topic_of(peer), progress_body(index), qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    peer.error = f"publish: {mqtt.error_string(info.rc)}"

    swarm.call(publish)


def wait_for(swarm: Clients, what: str, timeout: float, condition: Callable[[], bool], interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        swarm.raise_if_failed()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- reference: a bare amqtt broker

BARE_BROKER = textwrap.dedent(
    """
    import asyncio, sys
    from amqtt.broker import Broker

    async def main():
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
class Outcome:
    messages: int
    seconds: float  # from the first publish until every message was applied (or relayed)
    acked_seconds: float  # from the first publish until the last PUBACK

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def measure_relay(devices: int, messages: int, timeout: float) -> Outcome:
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
        subscriber = Client(None, "relay-subscriber", subscribe="/ota/device/progress/#")
        senders = [Client(None, f"relay-{index}") for index in range(devices)]
        swarm = Clients("relay", [subscriber, *senders], port)
        swarm.start()
        try:
            wait_for(swarm, "the relay clients to connect", 60, swarm.all_ready)
            total = devices * messages
            started = time.perf_counter()
            send_all(swarm, senders, lambda peer: f"/ota/device/progress/{peer.client_id}", messages)
            wait_for(swarm, "the relay to deliver every message", timeout, lambda: subscriber.received >= total)
            finished = time.perf_counter()
            wait_for(swarm, "every PUBACK", timeout, lambda: all(p.acked >= messages for p in senders))
            last_ack = max(peer.last_ack_at for peer in senders)
            return Outcome(total, finished - started, last_ack - started)
        finally:
            swarm.stop()
    finally:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- Skylift


def metric_value(text: str, name: str) -> float | None:
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(values) if values else None


def prepare_fleet(api: httpx.Client, devices: int) -> tuple[int, list[Client]]:
    """A product, `devices` token devices and a small package; returns the package id and the peers."""
    product = check(api.post("/products", json={"name": "ingest bench"}), 201, "POST /products").json()

    def create(index: int) -> Client:
        body = {"product_id": product["id"], "name": f"ingest-{index:05d}"}
        token = str(check(api.post("/devices", json=body), 201, "POST /devices").json()["access_token"])
        return Client(token, f"ingest-{index}", subscribe=f"/ota/device/upgrade/{token}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        peers = list(pool.map(create, range(devices)))
    data = {"product_id": str(product["id"]), "name": "bench", "version": NEW_VERSION}
    files = {"file": ("firmware.bin", b"\x5a" * 4096, "application/octet-stream")}
    package = check(api.post("/packages", data=data, files=files), 201, "POST /packages").json()
    return int(package["id"]), peers


def measure_skylift(server: Server, devices: int, messages: int, timeout: float) -> Outcome:
    with httpx.Client(
        base_url=f"{server.base_url}/api/v1", headers={"Authorization": f"Bearer {server.token}"}, timeout=API_TIMEOUT
    ) as api:
        package_id, peers = prepare_fleet(api, devices)

        swarm = Clients("devices", peers, server.mqtt_port)
        swarm.start()
        try:
            wait_for(swarm, "the devices to connect", 60, swarm.all_ready)
            informs = {"id": "1", "params": {"version": OLD_VERSION}}

            def inform() -> None:
                for peer in peers:
                    assert peer.client is not None
                    peer.client.publish(f"/ota/device/inform/{peer.username}", json.dumps(informs).encode(), qos=1)

            swarm.call(inform)
            wait_for(swarm, "the version reports", 60, lambda: all(p.acked >= 1 for p in peers))
            campaign = check(
                api.post("/campaigns", json={"name": "ingest bench", "package_id": package_id}), 201, "POST /campaigns"
            ).json()
            wait_for(swarm, "every notice", 60, lambda: all(p.notice is not None for p in peers))
            for peer in peers:
                peer.acked = 0

            total = devices * messages
            last_desc = f"m{messages - 1}"
            started = time.perf_counter()
            send_all(swarm, peers, lambda peer: f"/ota/device/progress/{peer.username}", messages)
            deadline = started + timeout
            while True:
                swarm.raise_if_failed()
                applied = metric_value(httpx.get(f"{server.base_url}/metrics").text, APPLIED_METRIC)
                if applied is None or applied >= total:
                    rows = check(
                        api.get(f"/campaigns/{campaign['id']}/devices", params={"limit": MAX_PAGE}), 200, "GET devices"
                    ).json()["items"]
                    if len(rows) == devices and all(row["step_desc"] == last_desc for row in rows):
                        break
                if time.perf_counter() > deadline:
                    acked = sum(p.acked for p in peers)
                    raise BenchError(f"not applied after {timeout:.0f} s: {acked}/{total} acknowledged, {applied=}")
                time.sleep(POLL_INTERVAL_S)
            finished = time.perf_counter()
            last_ack = max(peer.last_ack_at for peer in peers)
            if any(peer.acked < messages for peer in peers):
                raise BenchError("applied, yet some reports were never acknowledged")
            return Outcome(total, finished - started, last_ack - started)
        finally:
            swarm.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--messages", type=int, default=50, help="progress reports per device")
    parser.add_argument("--timeout", type=float, default=300, help="seconds each phase may take")
    parser.add_argument("--skip-relay", action="store_true", help="do not measure the bare amqtt broker")
    args = parser.parse_args()
    if not 1 <= args.devices <= MAX_PAGE:
        parser.error(f"--devices is 1 to {MAX_PAGE} (one page of a campaign's device list)")

    root = Path(tempfile.mkdtemp(prefix="skylift-ingest-"))
    server: Server | None = None
    try:
        relay = None if args.skip_relay else measure_relay(args.devices, args.messages, args.timeout)
        server = start_server(root)
        wait_healthy(server)
        outcome = measure_skylift(server, args.devices, args.messages, args.timeout)
        print(f"devices {args.devices}, progress reports per device {args.messages}, total {outcome.messages}")
        print(
            f"skylift: applied {outcome.rate:8.0f} msg/s ({outcome.seconds:.2f} s); "
            f"last PUBACK after {outcome.acked_seconds:.2f} s"
        )
        if relay is not None:
            print(
                f"bare amqtt relay: {relay.rate:8.0f} msg/s ({relay.seconds:.2f} s); "
                f"last PUBACK after {relay.acked_seconds:.2f} s"
            )
            print(f"ratio skylift / bare relay: {outcome.rate / relay.rate:.2f}")
        return 0
    except (BenchError, httpx.HTTPError, OSError) as exc:
        return report_failure(exc, server)
    finally:
        if server is not None and server.process.poll() is None:
            server.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=15)
            if server.process.poll() is None:
                server.process.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
