"""Device message intake: progress and version reports turned into committed state, per second.

For each `DEVICES:MESSAGES` in `--fleets`, first the reference: a bare amqtt broker (the broker Skylift
embeds, alone) relays the same message mix from as many devices to one subscriber. Then the real
`skylift serve`: the devices are registered, connect (token login, subscribed, version 1.0.0 reported),
a campaign notifies every one of them, and then every device sends its MESSAGES - 1 progress reports
(QoS 1, steps 1..99) and a report of the new version at once, as fast as paho's in-flight window of 20
lets it. The clock stops when `skylift_device_messages_applied_total` has counted every message and the
campaign shows every device succeeded: every message is committed state by then.

    python bench/ingest.py                          # 1,000 x 20 and 10,000 x 5 messages
    python bench/ingest.py --fleets 200:10          # a quick check
    python bench/ingest.py --postgresql postgresql+asyncpg://postgres@127.0.0.1:5432   # Skylift on PostgreSQL
    python bench/ingest.py --postgresql postgresql+asyncpg://... --replicas 2          # two replicas, one database
    python bench/ingest.py --broker mosquitto          # devices on Mosquitto with Skylift's plugin
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleetkit import (
    NEW_VERSION,
    Device,
    Fleet,
    add_database_option,
    anonymous_devices,
    api_client,
    bare_broker,
    cpu_seconds,
    database_arguments,
    database_cpu_seconds,
    database_settings,
    fleet_parser,
    metrics_of,
    print_table,
    raise_open_files,
    ratio,
    register_fleet,
    run,
    running_replicas,
    server_pids,
    token_devices,
    upload_small_package,
    wait_until,
)
from upload_download import check

APPLIED = "skylift_device_messages_applied_total"


def mix(messages: int) -> list[tuple[str, bytes]]:
    """(topic kind, body) of one device's messages: progress reports, then its new version."""
    bodies = [
        ("progress", json.dumps({"step": str(1 + n % 99), "desc": f"m{n}"}).encode()) for n in range(messages - 1)
    ]
    return [*bodies, ("inform", json.dumps({"id": "2", "params": {"version": NEW_VERSION}}).encode())]


def send_mix(fleet: Fleet, messages: int) -> None:
    for kind, body in mix(messages):
        fleet.publish_all(lambda device, kind=kind: f"/ota/device/{kind}/{device.key}", [body])


@dataclass
class Outcome:
    messages: int
    seconds: float  # first publish until every message was applied (or relayed)
    acked_seconds: float  # first publish until the last PUBACK
    cpu_per_message_ms: float = 0.0
    database_cpu_per_message_ms: float = 0.0  # PostgreSQL's processes, when Skylift runs on it

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def bare_relay(devices: int, messages: int, timeout: float, kind: str = "embedded") -> Outcome:
    # QoS 0 to the subscriber: one client acknowledging every message would be the limit, not the broker.
    subscriber = Device(key="subscriber", token=None, topic_filter="/ota/device/#", subscribe_qos=0)
    with (
        bare_broker(kind) as broker,
        Fleet([subscriber], broker.port, threads=1, name="subscriber") as listening,
        Fleet(anonymous_devices(devices), broker.port, name="bare") as fleet,
    ):
        listening.ready(timeout)
        fleet.ready(timeout)
        total = devices * messages
        cpu_before = cpu_seconds(broker.pid)
        started = time.perf_counter()
        send_mix(fleet, messages)
        wait_until("the relay to deliver every message", timeout, lambda: subscriber.notices >= total, 0.01)
        seconds = time.perf_counter() - started
        fleet.wait("every PUBACK", timeout, lambda device: device.acked >= messages)
        last_ack = max(device.last_ack_at for device in fleet.devices) - started
        cpu = cpu_seconds(broker.pid) - cpu_before
        return Outcome(total, seconds, last_ack, cpu / total * 1000)


def skylift_ingest(
    root: Path,
    devices: int,
    messages: int,
    timeout: float,
    postgresql: str | None,
    replicas: int = 1,
    broker: str = "embedded",
) -> Outcome:
    with (
        database_settings(postgresql) as database,
        running_replicas(root, replicas, database, broker) as servers,
        api_client(servers[0]) as api,
    ):

        def applied_count() -> float:
            return sum(metrics_of(server, APPLIED) for server in servers)

        product_id, tokens = register_fleet(api, devices, "ingest bench")
        package_id = upload_small_package(api, product_id)
        # Devices spread evenly over the replicas (as a TCP load balancer would).
        with Fleet(token_devices(tokens, inform=True), [server.mqtt_port for server in servers]) as fleet:
            fleet.ready(timeout)
            wait_until("every version report applied", timeout, lambda: applied_count() >= devices, 0.2)
            body = {"name": "ingest bench", "package_id": package_id}
            campaign = check(api.post("/campaigns", json=body), 201, "POST /campaigns").json()
            fleet.wait("every notice", timeout, lambda device: device.notices > 0)
            for device in fleet.devices:
                device.acked = 0
            applied_before = applied_count()
            total = devices * messages
            pids = server_pids(servers)

            def skylift_cpu() -> float:
                return sum(cpu_seconds(pid) for pid in pids)

            cpu_before, database_cpu_before = skylift_cpu(), database_cpu_seconds()
            print(f"  skylift (pids {pids}): {devices} devices connected; sending {total} messages", flush=True)
            started = time.perf_counter()
            send_mix(fleet, messages)

            def applied() -> bool:
                fleet.raise_if_failed()
                if applied_count() - applied_before < total:
                    return False
                counts = check(api.get(f"/campaigns/{campaign['id']}"), 200, "GET campaign").json()["counts"]
                return int(counts.get("succeeded", 0)) >= devices

            wait_until("every message applied", timeout, applied, 0.1)
            seconds = time.perf_counter() - started
            cpu = skylift_cpu() - cpu_before
            database_cpu = database_cpu_seconds() - database_cpu_before
            fleet.wait("every PUBACK", timeout, lambda device: device.acked >= messages)
            last_ack = max(device.last_ack_at for device in fleet.devices) - started
            return Outcome(total, seconds, last_ack, cpu / total * 1000, database_cpu / total * 1000)


def parse_fleets(text: str) -> list[tuple[int, int]]:
    fleets = []
    for part in text.split(","):
        devices, _, messages = part.partition(":")
        fleets.append((int(devices), int(messages or 10)))
    return fleets


def main() -> int:
    parser = fleet_parser(__doc__, "1000:20,10000:5", "DEVICES:MESSAGES per device, comma-separated")
    add_database_option(parser)
    args = database_arguments(parser)
    raise_open_files()
    rows = []
    for devices, messages in parse_fleets(args.fleets):
        if messages < 2:
            parser.error("each device sends at least 2 messages (progress, then its version)")
        relay = None if args.skip_reference else bare_relay(devices, messages, args.timeout, args.broker)
        root = Path(tempfile.mkdtemp(prefix="skylift-ingest-"))
        try:
            outcome = skylift_ingest(root, devices, messages, args.timeout, args.postgresql, args.replicas, args.broker)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        name = f"{devices} x {messages}" + (f" on {args.replicas} replicas" if args.replicas > 1 else "")
        name += " on Mosquitto (CPU: Skylift + Mosquitto)" if args.broker == "mosquitto" else ""
        line = (
            f"applied {outcome.rate:7.0f} msg/s ({outcome.seconds:6.2f} s,"
            f" last PUBACK {outcome.acked_seconds:6.2f} s,"
            f" {outcome.cpu_per_message_ms:.2f} ms CPU/msg"
            + (f" + PostgreSQL {outcome.database_cpu_per_message_ms:.2f} ms" if args.postgresql else "")
            + ")"
        )
        if relay is not None:
            line += (
                f"  | bare relay {relay.rate:7.0f} msg/s ({relay.cpu_per_message_ms:.2f} ms CPU/msg)"
                f"  | ratio {ratio(outcome.rate, relay.rate)}, CPU per message ratio"
                f" {ratio(relay.cpu_per_message_ms, outcome.cpu_per_message_ms)}"
            )
        rows.append((name, line))
        print_table(f"ingest, {name}", rows[-1:])
    reference = "Mosquitto" if args.broker == "mosquitto" else "amqtt"
    print_table(f"ingest (skylift vs the bare {reference} relay, same message mix, same run)", rows)
    return 0


if __name__ == "__main__":
    run(main)
